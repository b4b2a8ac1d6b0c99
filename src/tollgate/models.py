"""Every part's models, imported together so the metadata is complete (migrations, tests)."""

from tollgate.accounts import models as accounts_models
from tollgate.analytics import models as analytics_models
from tollgate.broker import models as broker_models
from tollgate.chat import models as chat_models
from tollgate.core.database import Base
from tollgate.gateway import models as gateway_models
from tollgate.identity import models as identity_models
from tollgate.identity.oauth import models as oauth_models

__all__ = [
    "Base",
    "accounts_models",
    "analytics_models",
    "broker_models",
    "chat_models",
    "gateway_models",
    "identity_models",
    "oauth_models",
]
