from . import sync_event_discard
from . import sync_channel_replay
