"""Privacy engine (docs/design.md § 6): copy detection, memorisation, membership inference, shadow executors.

Front door: :func:`cmraudit.privacy.audit.audit_privacy` → :class:`PrivacyResult`. A new membership attack
subclasses :class:`Attack` (scores an :class:`AuditContext`) and is registered by name (docs/plugins.md).
"""
from .audit import PrivacyResult, audit_privacy
from .config import AuditConfig, ShadowConfig
from .mia.interface import ATTACKS, Attack, AuditContext

__all__ = ["ATTACKS", "Attack", "AuditConfig", "AuditContext", "PrivacyResult", "ShadowConfig", "audit_privacy"]
