from . import test_outbound_push
from . import test_webhook
from . import test_channel_types
from . import test_reconcile
from . import test_dashboard_security
from . import test_tour
from . import test_delivery_race
from . import test_alert_race
