from . import sync_channel
from . import channel_binding
from . import sync_event
from . import stock_quant
from . import product_product
from . import stock_picking
from . import sync_channel_reconcile
from . import sync_dashboard
