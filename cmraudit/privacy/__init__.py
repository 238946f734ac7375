"""Privacy engine (docs/design.md § 6): copy detection, memorisation, membership inference, shadow executors.

Front door: :func:`cmraudit.privacy.audit.audit_privacy` → :class:`PrivacyResult`.
"""
from .audit import PrivacyResult, audit_privacy
from .config import AuditConfig, ShadowConfig

__all__ = ["AuditConfig", "PrivacyResult", "ShadowConfig", "audit_privacy"]
