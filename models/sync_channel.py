# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A sales channel: one connected shop or marketplace account.

The channel owns everything needed to talk to the marketplace (credentials,
visible to sync managers only), the stock it sells (warehouses or locations
whose *free* quantity is published), the default buffer, and the inbound
webhook endpoint (an unguessable token in the URL plus signing secrets).
"""

import json
import logging
import math
import secrets
import threading
import time
from collections import Counter

import psycopg2.errors

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from ..lib.adapters import ChannelConfig, ChannelError, get_adapter_class
from ..lib.adapters.amazon import RATE_LIMITS as AMAZON_RATE_LIMITS
from ..lib.signatures import generate_standard_secret, load_ed25519_public_key

_logger = logging.getLogger(__name__)

MANAGER = "stock_channel_sync.group_sync_manager"

CHANNEL_TYPES = [
    ("generic", "Generic (Standard Webhooks)"),
    ("shopify", "Shopify"),
    ("woocommerce", "WooCommerce"),
    ("amazon", "Amazon SP-API"),
    ("ebay", "eBay"),
]

# (dbname, channel id) -> adapter; one pooled HTTP session per channel and
# process, rebuilt when the channel's configuration changes.
_ADAPTERS = {}
_ADAPTERS_LOCK = threading.Lock()


def _new_token(_records=None):
    return secrets.token_urlsafe(32)


def _count(low, high=None):
    """An option that is a whole number within bounds."""

    def check(value):
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= low
            and (high is None or value <= high)
        )

    check.expected = f"a whole number from {low}" + (f" to {high}" if high else "")
    return check


def _seconds(high):
    def check(value):
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and 0 <= value <= high
        )

    check.expected = f"a number of seconds from 0 to {high}"
    return check


def _of(kind, name):
    def check(value):
        return (
            isinstance(value, kind)
            and not isinstance(value, bool)
            or (kind is bool and isinstance(value, bool))
        )

    check.expected = name
    return check


#: what a channel's adapter options may hold (see the README): anything
#: else is refused when saved, not found out at the first push
ADAPTER_OPTIONS = {
    "max_batch": _count(1, 250),
    "page_size": _count(1, 250),
    "revision_limit": _count(1, 250),
    "revision_reserve": _count(0, 250),
    "rate_limit_retry_after": _seconds(3600),
    "scopes": _of(list, "a list of scopes"),
    "token_margin": _seconds(3600),
    "product_type": _of(str, "a product type"),
    "product_types": _of(dict, "an object of SKU: product type"),
    "fulfillment_channel_code": _of(str, "a fulfillment channel code"),
    "feed_threshold": _count(0, 25000),
    "feed_poll_attempts": _count(0, 100),
    "feed_poll_interval": _seconds(600),
    "max_throttle_wait": _seconds(600),
    "rate_limits": _of(dict, "an object of operation: [rate, burst]"),
    "client_throttle": _of(bool, "true or false"),
    "query_string_auth": _of(bool, "true or false"),
}


def _validate_ranges(records, field_names, excluded_names):
    """``_validate_fields`` of a model with ``SETTING_RANGES``: the ranges of
    the settings written only, so that a value out of range saved before
    the check existed does not refuse an edit of another setting."""
    written = set(field_names) - set(excluded_names)
    ranges = {
        name: bounds
        for name, bounds in records.SETTING_RANGES.items()
        if name in written
    }
    if ranges:
        for record in records.sudo():
            _check_ranges(record, ranges)


def _check_ranges(record, ranges):
    """Raise ``ValidationError`` naming the first field of ``record`` out of
    its ``(low, high)`` range (a bound of None is open)."""
    for name, (low, high) in ranges.items():
        value = record[name]
        # NaN compares false with every bound: refused as out of any range
        if (
            not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            label = record._fields[name].get_description(record.env)["string"]
            if high is None:
                bounds = _("at least %s", low)
            else:
                bounds = _("between %(low)s and %(high)s", low=low, high=high)
            raise ValidationError(
                _(
                    "%(field)s must be %(bounds)s, not %(value)s.",
                    field=label,
                    bounds=bounds,
                    value=value,
                )
            )


#: the channel types whose adapter reads each option
OPTION_TYPES = {
    "max_batch": ("ebay",),
    "page_size": ("generic",),
    "revision_limit": ("ebay",),
    "revision_reserve": ("ebay",),
    "rate_limit_retry_after": ("ebay",),
    "scopes": ("ebay",),
    "token_margin": ("amazon", "ebay"),
    "product_type": ("amazon",),
    "product_types": ("amazon",),
    "fulfillment_channel_code": ("amazon",),
    "feed_threshold": ("amazon",),
    "feed_poll_attempts": ("amazon",),
    "feed_poll_interval": ("amazon",),
    "max_throttle_wait": ("amazon",),
    "rate_limits": ("amazon",),
    "client_throttle": ("amazon",),
    "query_string_auth": ("woocommerce",),
}


def _check_options(options, channel_type=None):
    """Each option known, of its kind and read by the adapter of
    ``channel_type`` (when given); ``ValueError`` says which not."""
    for name, value in options.items():
        check = ADAPTER_OPTIONS.get(name)
        if check is None:
            raise ValueError(
                f"unknown option {name!r} (known: {', '.join(sorted(ADAPTER_OPTIONS))})"
            )
        if channel_type and channel_type not in OPTION_TYPES[name]:
            own = sorted(
                n for n, kinds in OPTION_TYPES.items() if channel_type in kinds
            )
            raise ValueError(
                f"{name!r} is not an option of {channel_type} channels"
                f" (theirs: {', '.join(own) or 'none'})"
            )
        if not check(value):
            raise ValueError(f"{name} must be {check.expected}, not {value!r}")
    if channel_type == "ebay" and options.get("max_batch", 1) > 25:
        raise ValueError("max_batch must be 1 to 25 for eBay (its bulk call limit)")
    if options.get("revision_reserve", 0) > options.get("revision_limit", 250):
        raise ValueError("revision_reserve must not exceed revision_limit")
    types = options.get("product_types") or {}
    if not all(isinstance(v, str) for v in types.values()):
        raise ValueError("product_types must map each SKU to a product type")
    scopes = options.get("scopes") or []
    if not all(isinstance(v, str) and v for v in scopes):
        raise ValueError("scopes must be a list of scopes")
    for operation, plan in (options.get("rate_limits") or {}).items():
        if operation not in AMAZON_RATE_LIMITS:
            raise ValueError(
                f"rate_limits: unknown operation {operation!r} (known:"
                f" {', '.join(sorted(AMAZON_RATE_LIMITS))})"
            )
        if plan is not None and not _rate_plan(plan):
            raise ValueError(
                f"rate_limits[{operation!r}] must be [requests per second > 0,"
                f" burst >= 1] or null (no client-side limit), not {plan!r}"
            )


def _rate_plan(plan):
    """Whether ``plan`` is ``[rate, burst]``: positive finite numbers, the
    burst at least one request (the token bucket divides by the rate)."""
    if not isinstance(plan, list) or len(plan) != 2:
        return False
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in plan
    ):
        return False
    return plan[0] > 0 and plan[1] >= 1


def _options(text):
    """The adapter options of a channel: a JSON object, ``{}`` when empty."""
    if not (text or "").strip():
        return {}
    options = json.loads(text)
    if not isinstance(options, dict):
        raise TypeError('a JSON object is expected, e.g. {"max_batch": 1}')
    return options


class SyncChannel(models.Model):
    _name = "sync.channel"
    _description = "Sales Channel (stock sync)"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "sequence, name, id"
    _check_company_auto = True

    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    channel_type = fields.Selection(
        CHANNEL_TYPES, string="Type", required=True, default="generic", tracking=True
    )
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company, index=True
    )
    user_id = fields.Many2one(
        "res.users",
        string="Responsible",
        default=lambda self: self.env.user,
        help="Receives the activities raised for dead letters, oversells and "
        "missed targets.",
    )
    sync_enabled = fields.Boolean(
        "Push Stock",
        default=True,
        tracking=True,
        help="When off, stock changes are not pushed to this channel (its "
        "bindings and webhooks stay as they are).",
    )
    warehouse_ids = fields.Many2many(
        "stock.warehouse",
        string="Warehouses",
        check_company=True,
        help="Warehouses whose free stock (stock location and its children) "
        "this channel sells. Empty: every warehouse of the company (unless "
        "the locations below are set); archived ones sell nothing.",
    )
    location_ids = fields.Many2many(
        "stock.location",
        string="Locations",
        domain="[('usage', '=', 'internal')]",
        check_company=True,
        help="Extra internal locations (and their children) whose free stock "
        "this channel sells, in addition to the warehouses.",
    )
    buffer_qty = fields.Float(
        "Buffer",
        default=0.0,
        digits="Product Unit",
        help="Units held back from this channel for every SKU (a binding can "
        "override it).",
    )
    timeout = fields.Float("HTTP Timeout (s)", default=10.0)
    max_retries = fields.Integer(
        default=8, help="Attempts of a failed push before it becomes a dead letter."
    )

    # -- credentials: sync managers only --
    base_url = fields.Char("API URL", groups=MANAGER)
    api_key = fields.Char("API Key / Client ID", groups=MANAGER)
    api_secret = fields.Char("API Secret / Client Secret", groups=MANAGER)
    access_token = fields.Char(groups=MANAGER)
    refresh_token = fields.Char(groups=MANAGER)
    token_url = fields.Char("Token URL", groups=MANAGER)
    account_id = fields.Char(
        "Account / Seller ID", groups=MANAGER, help="Amazon seller id, shop id."
    )
    marketplace_id = fields.Char("Marketplace ID", groups=MANAGER)
    external_location_id = fields.Char(
        "Channel Location ID", groups=MANAGER, help="Shopify location gid."
    )
    api_version = fields.Char(groups=MANAGER)
    signing_secret = fields.Char(
        "Outbound Signing Secret",
        groups=MANAGER,
        copy=False,
        help="Standard Webhooks secret (whsec_...) used to sign what Odoo sends "
        "to a generic channel.",
    )
    signing_private_key = fields.Char(
        "Outbound Ed25519 Key",
        groups=MANAGER,
        copy=False,
        help="Optional whsk_ key: adds a v1a signature to outbound requests.",
    )

    # -- inbound webhooks --
    webhook_token = fields.Char(
        groups=MANAGER, copy=False, default=_new_token, readonly=True
    )
    webhook_url = fields.Char(compute="_compute_webhook_url", groups=MANAGER)
    webhook_secret = fields.Char(
        groups=MANAGER,
        copy=False,
        help="Secret the channel signs its webhooks with.",
    )
    webhook_secret_previous = fields.Char(groups=MANAGER, copy=False)
    webhook_secret_previous_expiry = fields.Datetime(
        "Previous Secret Valid Until", groups=MANAGER, copy=False
    )
    webhook_public_key = fields.Char(
        "Webhook Ed25519 Public Key",
        groups=MANAGER,
        copy=False,
        help="whpk_ key of a generic channel that signs with v1a.",
    )
    webhook_tolerance = fields.Integer(
        "Timestamp Tolerance (s)",
        default=300,
        groups=MANAGER,
        help="How old (or how far ahead) a signed webhook timestamp may be: "
        "1 to 3600 seconds, 300 by the Standard Webhooks reference.",
    )
    adapter_options = fields.Text(
        groups=MANAGER,
        help="Advanced settings of the channel's adapter, as a JSON object; "
        'empty for the defaults. eBay: {"max_batch": 1} (one SKU per '
        'bulk call), "revision_limit", "revision_reserve"; Amazon: '
        '"product_type", "product_types" (per SKU), '
        '"fulfillment_channel_code", "feed_threshold", "rate_limits"; '
        'WooCommerce: {"query_string_auth": true} (keys in the query '
        "string, for servers that drop the Authorization header). "
        "See the module's README.",
    )

    binding_ids = fields.One2many("channel.binding", "channel_id", string="Bindings")
    binding_count = fields.Integer(compute="_compute_counts")
    event_count = fields.Integer(compute="_compute_counts")
    dead_count = fields.Integer(compute="_compute_counts")
    oversell_count = fields.Integer(compute="_compute_counts")

    _webhook_token_uniq = models.UniqueIndex(
        "(webhook_token)", "The webhook token must be unique."
    )

    # -- compute --
    @api.depends("webhook_token")
    def _compute_webhook_url(self):
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for channel in self:
            # a channel not saved yet has no URL: the token of the form is a
            # default that its creation draws again, so a URL copied before
            # saving would answer 404
            channel.webhook_url = (
                f"{base}/stock_channel_sync/webhook/{channel.webhook_token}"
                if channel.webhook_token and channel._origin.id
                else False
            )

    def _compute_counts(self):
        bindings = dict(
            self.env["channel.binding"]._read_group(
                [("channel_id", "in", self.ids)], ["channel_id"], ["__count"]
            )
        )
        Event = self.env["sync.event"]
        events = dict(
            Event._read_group(
                [("channel_id", "in", self.ids)], ["channel_id"], ["__count"]
            )
        )
        dead = dict(
            Event._read_group(
                [("channel_id", "in", self.ids), ("state", "=", "dead")],
                ["channel_id"],
                ["__count"],
            )
        )
        oversells = dict(
            Event._read_group(
                [("channel_id", "in", self.ids), ("kind", "=", "oversell")],
                ["channel_id"],
                ["__count"],
            )
        )
        for channel in self:
            channel.binding_count = bindings.get(channel, 0)
            channel.event_count = events.get(channel, 0)
            channel.dead_count = dead.get(channel, 0)
            channel.oversell_count = oversells.get(channel, 0)

    # -- actions --
    def _scs_check_configure(self):
        """Raise AccessError unless the user may configure these channels.

        The actions below read credentials or change them as the superuser
        (a sync user may not read them): the buttons are shown to sync
        managers only, but any logged-in user can call a public method over
        RPC, so each checks the caller's write access first, which the
        company rules also limit to the channel's company.
        """
        self.check_access("write")

    def action_test_connection(self):
        """Check the channel's credentials and reachability. A channel
        paused because it did not answer, and that answers now, is resumed
        at once: its circuit closes and the bindings whose number it missed
        are pushed, instead of waiting for the pause to end (up to 10
        minutes, during which it would sell what other channels sold)."""
        self.ensure_one()
        self._scs_check_configure()
        try:
            message = self._scs_adapter().test_connection()
        except (ChannelError, KeyError, ValueError) as err:
            raise UserError(_("Connection failed: %s", err)) from err
        message = message or _("The channel answered.")
        blockers = self._scs_push_blockers()
        if blockers:
            raise UserError(
                _(
                    "The channel answered (%(answer)s), but pushes cannot"
                    " work: %(blockers)s",
                    answer=message.rstrip(". "),
                    blockers="; ".join(blockers),
                )
            )
        if self.channel_type == "generic":
            message = (
                message.rstrip(". ")
                + ". "
                + _(
                    "The shop checks the outbound signing secret on each push"
                    " (this read is not signed): a wrong one shows as a 401"
                    " dead letter on the first push."
                )
            )
        if self._scs_pause_state().get(self.id, (0, 0.0))[0]:
            if self._scs_answered():
                self.invalidate_recordset(["pause_count", "paused_until"])
                self.action_push_all(force=False)
                note = _(
                    "It was paused after it did not answer: its pushes resume now."
                )
            else:
                note = _(
                    "It is paused after it did not answer, and busy: try again"
                    " in a moment, or its pause ends by itself."
                )
            message = message.rstrip(". ") + ". " + note
        return self._scs_notification(_("Connection OK"), message)

    def _scs_push_blockers(self):
        """What the channel's settings lack for a push to work, which a
        successful connection does not show: the ids a push's address or
        body needs (a push without them is refused by the channel)."""
        self.ensure_one()
        channel = self.sudo()
        blockers = []
        if channel.channel_type == "amazon":
            if not channel.account_id:
                blockers.append(
                    _("no Account / Seller ID (each listing's address names it)")
                )
            if not any(m.strip() for m in (channel.marketplace_id or "").split(",")):
                blockers.append(_("no Marketplace ID"))
        if channel.channel_type == "shopify" and not channel.external_location_id:
            unplaced = channel.binding_ids.filtered(
                lambda b: not b.external_location_id
            )
            if unplaced:
                blockers.append(
                    _(
                        "no Channel Location ID, and %(count)s binding(s) name no"
                        " location of their own (Shopify sets a quantity at a"
                        " location)",
                        count=len(unplaced),
                    )
                )
        return blockers

    @api.model
    def _scs_notification(self, title, message):
        """A button's answer the user sees: what it did, or started (a
        button that only enqueues jobs would otherwise show nothing)."""
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": title,
                "message": message,
                "type": "success",
                "sticky": False,
            },
        }

    #: channel fields the published quantity depends on
    #: (with no warehouse chosen, the company decides what the channel sells)
    RULE_FIELDS = frozenset(
        {
            "buffer_qty",
            "warehouse_ids",
            "location_ids",
            "sync_enabled",
            "active",
            "company_id",
        }
    )

    def write(self, vals):
        """A change of what the channel sells, or of its buffer, is pushed at
        once, as a binding's is: left to the next stock change or the hourly
        pass, the channel would offer the old figure meanwhile (turning
        Push Stock back on after a sale would leave the sale on offer).

        Odoo checks the company rules before a write, not after: a manager
        could move a channel into a company he does not belong to, and sell
        that company's stock on his shop. The moved channel is checked again.
        """
        res = super().write(vals)
        if "company_id" in vals:
            if not self.env.su:
                self.check_access("write")
            # a binding names a product of its channel's company, or a
            # shared one: a channel does not take another company's along
            self.with_context(active_test=False).binding_ids._check_company(
                ["product_id"]
            )
        if not self.RULE_FIELDS.isdisjoint(vals):
            channels = self.filtered(lambda c: c.active and c.sync_enabled)
            if channels:
                channels.sudo().action_push_all(force=False)
        return res

    def action_push_all(self, force=True):
        """Enqueue a push of every binding of these channels, in batches.

        A change of a channel's settings moves that channel's numbers only:
        its bindings are pushed by jobs of up to ``reconcile_batch_size``
        (500) bindings each, one round of the adapter's batch calls per job
        (250 quantities per Shopify call, 100 per WooCommerce call), not one
        job per SKU fanned out to every channel: with 10,000 SKUs that was
        10,000 jobs and, on Shopify, 10,000 calls against its throttle; a
        failing channel gets its retry jobs, as any push.

        ``force``: *Push All Now* sends every binding's number, whatever
        Odoo last recorded of it: the user presses it because the shop shows
        something else (a hand edit, a shop restored from a backup), which
        Odoo cannot know. A settings change (``force=False``) skips the
        bindings whose number it did not move.
        """
        self._scs_check_configure()
        Binding = self.env["channel.binding"]
        queued = 0
        for channel in self:
            bindings = Binding.search([("channel_id", "=", channel.id)], order="id")
            size = max(1, channel.reconcile_batch_size or 500)
            batches = [bindings[i : i + size] for i in range(0, len(bindings), size)]
            for index, batch in enumerate(batches, 1):
                batch._scs_push_batch_later(
                    force, f"Push {channel.name}: batch {index}/{len(batches)}"
                )
            queued += len(bindings)
        if force:
            message = _(
                "%(count)s binding(s) will be pushed in the background, each"
                " with its number, whatever the channel shows now.",
                count=queued,
            )
        else:
            message = _(
                "%(count)s binding(s) will be pushed in the background; those"
                " already showing their number are skipped.",
                count=queued,
            )
        return self._scs_notification(
            _("Push queued"), message + self._scs_paused_note()
        )

    def _scs_paused_note(self):
        """What a button that queued pushes adds for those of these channels
        that are paused: their pushes wait (``""`` when none is)."""
        paused = self.filtered(lambda c: c.id in self._scs_may_send()[0])
        if not paused:
            return ""
        return " " + _(
            "%(channels)s did not answer lately, or asked to wait, and is"
            " paused: its pushes wait for the pause to end (Test Connection"
            " resumes it once it answers).",
            channels=", ".join(paused.mapped("name")),
        )

    def action_match_listings(self):
        """Bind variants to the channel's listings whose SKU is their reference.

        Reads the channel's catalogue (paginated, through the adapter) and
        creates a binding, with the listing's external ids, for every listing
        whose SKU equals a variant's internal reference and is not bound yet.
        A SKU that several variants share as their reference (Odoo allows it)
        is left unbound and named in the answer: two variants pushed to one
        listing would overwrite each other's number. A variant already bound
        on the channel (by hand, under another SKU) keeps its binding.
        """
        self._scs_check_configure()
        created = self.env["channel.binding"]
        ambiguous = set()
        for channel in self:
            try:
                levels = list(channel._scs_adapter().read_quantities())
            except ChannelError as err:
                raise UserError(_("Could not read the listings: %s", err)) from err
            # archived bindings too: their product and SKU are taken (the
            # one2many, read before, holds the active ones only)
            every = (
                self.env["channel.binding"]
                .with_context(active_test=False)
                .search([("channel_id", "=", channel.id)])
            )
            bound = set(every.mapped("sku"))
            skus = {lv.sku: lv for lv in levels if lv.sku and lv.sku not in bound}
            products = self.env["product.product"].search(
                [
                    ("default_code", "in", list(skus)),
                    ("is_storable", "=", True),
                    ("company_id", "in", (False, channel.company_id.id)),
                ]
            )
            per_sku = Counter(products.mapped("default_code"))
            ambiguous.update(sku for sku, count in per_sku.items() if count > 1)
            bound_products = every.product_id
            products = products.filtered(
                lambda p, counts=per_sku, bound=bound_products: (
                    counts[p.default_code] == 1 and p not in bound
                )
            )
            bindings = self.env["channel.binding"].create(
                [
                    {
                        "channel_id": channel.id,
                        "product_id": product.id,
                        "sku": product.default_code,
                        "external_id": skus[product.default_code].external_id or False,
                        "external_variant_id": skus[
                            product.default_code
                        ].external_variant_id
                        or False,
                    }
                    for product in products
                ]
            )
            created |= bindings
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("Listings matched"),
                "message": _("%s binding(s) created.", len(created))
                + (
                    " "
                    + _(
                        "Not bound, shared by several variants as their reference: %s.",
                        ", ".join(sorted(ambiguous)),
                    )
                    if ambiguous
                    else ""
                ),
                "type": "warning" if ambiguous else "success",
                "sticky": bool(ambiguous),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def action_generate_signing_secret(self):
        self._scs_check_configure()
        for channel in self:
            channel.sudo().signing_secret = generate_standard_secret()
        return True

    def action_rotate_webhook_secret(self):
        """New inbound secret; the old one stays valid for a grace period
        (see ``write``).

        Shopify signs with the app's client secret, which Shopify issues: a
        secret made here could never be Shopify's. Its new secret is pasted
        into the field instead, which keeps the old one valid the same way.
        """
        self._scs_check_configure()
        if "shopify" in self.mapped("channel_type"):
            raise UserError(
                _(
                    "Shopify signs webhooks with the app's client secret: paste "
                    "the new one into Webhook Secret (the old one stays valid "
                    "for the grace period)."
                )
            )
        for channel in self.sudo():
            channel.webhook_secret = generate_standard_secret()
        return True

    def action_regenerate_webhook_token(self):
        self._scs_check_configure()
        for channel in self.sudo():
            channel.webhook_token = _new_token()
        return True

    def action_view_bindings(self):
        return self._scs_action("channel.binding", _("Bindings"))

    def action_view_events(self):
        return self._scs_action("sync.event", _("Events"))

    def action_view_dead_letters(self):
        action = self._scs_action("sync.event", _("Dead Letters"))
        action["domain"] = [("channel_id", "in", self.ids), ("state", "=", "dead")]
        return action

    def action_view_oversells(self):
        action = self._scs_action("sync.event", _("Oversell Incidents"))
        action["domain"] = [("channel_id", "in", self.ids), ("kind", "=", "oversell")]
        return action

    def _scs_action(self, model, name):
        return {
            "type": "ir.actions.act_window",
            "name": name,
            "res_model": model,
            "view_mode": "list,form",
            "domain": [("channel_id", "in", self.ids)],
            "context": {"default_channel_id": self.id if len(self) == 1 else False},
        }

    # -- helpers used by jobs --
    def _scs_config(self):
        """The plain configuration handed to the adapter (no record crosses)."""
        self.ensure_one()
        channel = self.sudo()
        return ChannelConfig(
            channel_type=channel.channel_type,
            base_url=(channel.base_url or "").rstrip("/"),
            api_key=channel.api_key or "",
            api_secret=channel.api_secret or "",
            access_token=channel.access_token or "",
            refresh_token=channel.refresh_token or "",
            account_id=channel.account_id or "",
            location_id=channel.external_location_id or "",
            marketplace_id=channel.marketplace_id or "",
            api_version=channel.api_version or "",
            token_url=channel.token_url or "",
            signing_secret=channel.signing_secret or "",
            signing_private_key=channel.signing_private_key or "",
            timeout=channel.timeout or 10.0,
            extra=_options(channel.adapter_options),
        )

    def _scs_adapter(self):
        """The channel's adapter, cached per process with its HTTP session."""
        self.ensure_one()
        config = self._scs_config()
        key = (self.env.cr.dbname, self.id)
        with _ADAPTERS_LOCK:
            cached = _ADAPTERS.get(key)
            if cached and cached[0] == config and cached[0].extra == config.extra:
                return cached[1]
            adapter = get_adapter_class(config.channel_type)(config)
            _ADAPTERS[key] = (config, adapter)
            return adapter

    #: the widest timestamp tolerance a channel may set (seconds): beyond
    #: it, a captured delivery replays for hours
    MAX_WEBHOOK_TOLERANCE = 3600

    #: settings and the range each must lie in (inclusive; None: no bound),
    #: so that a value that would do nothing, or the opposite of what it
    #: says, is refused when saved rather than silently clamped
    SETTING_RANGES = {
        "buffer_qty": (0.0, None),
        "timeout": (0.1, 600.0),
        "max_retries": (0, 100),
        "reconcile_interval": (0, 8760),
        "reconcile_batch_size": (1, 100000),
        "reconcile_max_share": (0.0, 100.0),
        "order_fetch_overlap": (0, 10080),
        "order_poll_interval": (0, 10080),
    }

    def _validate_fields(self, field_names, excluded_names=()):
        # create() hands a generator over, which super() would use up
        field_names = list(field_names)
        result = super()._validate_fields(field_names, excluded_names)
        _validate_ranges(self, field_names, excluded_names)
        return result

    @api.constrains("webhook_tolerance")
    def _check_webhook_tolerance(self):
        """The replay window of signed timestamps: a negative one refuses
        everything, a huge one lets an old captured delivery through."""
        for channel in self.sudo():
            if not 1 <= channel.webhook_tolerance <= self.MAX_WEBHOOK_TOLERANCE:
                raise ValidationError(
                    _(
                        "The timestamp tolerance must be between 1 and %s seconds.",
                        self.MAX_WEBHOOK_TOLERANCE,
                    )
                )

    @api.constrains("user_id", "company_id")
    def _check_responsible(self):
        """The responsible user receives the channel's alerts, with its
        errors: an internal user of the channel's company who may open it
        (as the form offers), also when written over RPC."""
        for channel in self.sudo():
            user = channel.user_id
            if user and not channel._scs_may_be_responsible(user):
                raise ValidationError(
                    _(
                        "%(user)s cannot be responsible for %(channel)s: the"
                        " responsible user is an internal user of the channel's"
                        " company with access to the stock synchronisation.",
                        user=user.name,
                        channel=channel.name,
                    )
                )

    def _scs_may_be_responsible(self, user):
        """Whether ``user`` may receive this channel's alerts: an active
        internal user of its company who may open it."""
        self.ensure_one()
        if user._is_superuser():
            return True
        return bool(
            user.active
            and not user.share
            and self.company_id in user.company_ids
            and user.has_group("stock_channel_sync.group_sync_user")
        )

    @api.constrains("webhook_public_key")
    def _check_webhook_public_key(self):
        """A ``v1a`` key that cannot verify is refused when it is saved: one
        pasted wrong would refuse every delivery, and one of small order
        would accept a signature made without any private key."""
        for channel in self.sudo():
            if not channel.webhook_public_key:
                continue
            try:
                load_ed25519_public_key(channel.webhook_public_key)
            except ValueError as err:
                raise ValidationError(
                    _("The webhook public key cannot be used: %s", err)
                ) from err

    @api.constrains("adapter_options", "channel_type")
    def _check_adapter_options(self):
        """Options the adapter cannot take are refused when they are saved,
        not when the first push fails on them."""
        for channel in self.sudo():
            if not channel.adapter_options:
                continue
            try:
                extra = _options(channel.adapter_options)
                _check_options(extra, channel.channel_type)
                get_adapter_class(channel.channel_type)(
                    ChannelConfig(channel.channel_type, extra=extra)
                )
            except (
                ValueError,
                TypeError,
                AttributeError,
                OverflowError,
                RecursionError,
            ) as err:
                raise ValidationError(
                    _(
                        "Adapter options of %(channel)s: %(error)s",
                        channel=channel.name,
                        error=err,
                    )
                ) from err

    def _scs_push_adapter(self, bindings):
        """The channel's adapter, ready to push ``bindings``.

        A channel that limits revisions per listing (eBay: 250 a day, then
        the listing is locked until the next day) is handed the revisions
        the event log recorded for them: each process's adapter counts only
        what it sent itself, and starts again at zero after a restart.
        """
        adapter = self._scs_adapter()
        window = adapter.revision_window
        if not window or not bindings:
            return adapter
        # the count is per listing: variants of one listing share it
        keys = {adapter.revision_key(b._scs_update(0)) for b in bindings}
        siblings = bindings | self.env["channel.binding"].sudo().with_context(
            active_test=False
        ).search(
            [
                ("channel_id", "=", self.id),
                "|",
                ("external_id", "in", list(keys)),
                ("sku", "in", list(keys)),
            ]
        )
        Event = self.env["sync.event"]
        Event.flush_model(["binding_id", "direction", "state", "ack_ts"])
        self.env.cr.execute(
            SQL(
                """SELECT binding_id, ARRAY_AGG(ack_ts)
                     FROM sync_event
                    WHERE binding_id = ANY(%s) AND direction = 'out'
                      AND state = 'applied' AND ack_ts > %s
                    GROUP BY binding_id""",
                siblings.ids,
                time.time() - window,
            )
        )
        recorded = dict(self.env.cr.fetchall())
        stamps = {key: [] for key in keys}
        for binding in siblings:
            key = adapter.revision_key(binding._scs_update(0))
            if key in stamps:
                stamps[key].extend(recorded.get(binding.id) or [])
        adapter.load_revisions(stamps)
        return adapter

    def _scs_stock_locations(self):
        """Root internal locations whose free stock this channel sells."""
        self.ensure_one()
        locations = self.location_ids
        warehouses = self.warehouse_ids
        if not warehouses and not locations:
            configured = self.with_context(active_test=False)
            if configured.warehouse_ids or configured.location_ids:
                # what the channel sells is archived: it sells nothing, not
                # every warehouse of the company (which "none chosen" means)
                return self.env["stock.location"]
            warehouses = self.env["stock.warehouse"].search(
                [("company_id", "=", self.company_id.id)]
            )
        roots = (locations | warehouses.lot_stock_id).filtered(
            lambda loc: loc.usage == "internal"
        )
        # a location inside another one chosen is already counted in it: as
        # a source of its own, an order split between the two would count
        # its stock twice and be sent to reserve units it does not have
        return roots.filtered(
            lambda loc: (
                not any(
                    other != loc and loc.parent_path.startswith(other.parent_path)
                    for other in roots
                )
            )
        )

    def _scs_free_quantities(self, product_ids, locations=None):
        """Free quantity (on hand minus reserved) per product, in one query.

        Reads the quants of the channel's locations and their children; the
        per-product ORM compute would cost one query per product, which the
        reconciliation pass over 100,000 bindings cannot afford.
        ``locations``: these instead of the channel's (one of them, to choose
        where an order is reserved). A quant
        can hold a reservation and no quantity (NULL): Odoo creates one when
        the quant it would reserve on is locked by a concurrent transaction;
        its reservation counts.
        """
        self.ensure_one()
        product_ids = list(product_ids)
        result = dict.fromkeys(product_ids, 0.0)
        if locations is None:
            locations = self._scs_stock_locations()
        if not product_ids or not locations:
            return result
        self.env["stock.quant"].flush_model(
            ["product_id", "location_id", "quantity", "reserved_quantity"]
        )
        self.env["stock.location"].flush_model(["parent_path", "usage"])
        patterns = [f"{path}%" for path in locations.mapped("parent_path")]
        self.env.cr.execute(
            SQL(
                """
                SELECT q.product_id,
                       SUM(COALESCE(q.quantity, 0) - COALESCE(q.reserved_quantity, 0))
                  FROM stock_quant q
                  JOIN stock_location l ON l.id = q.location_id
                 WHERE q.product_id = ANY(%s)
                   AND l.usage = 'internal'
                   AND l.parent_path LIKE ANY(%s)
              GROUP BY q.product_id
                """,
                product_ids,
                patterns,
            )
        )
        for product_id, free in self.env.cr.fetchall():
            result[product_id] = free or 0.0
        return result

    def _scs_notify(self, summary, note, key=None, refresh=False):
        """Raise an activity for the responsible user (once per open key).

        Scheduling it makes the user a follower of the channel when they are
        not one yet. Two jobs alerting on one channel at the same moment (two
        SKUs dead on a channel that is down) would both add that follower,
        and the second insert fails on the followers' unique key once the
        first job commits: the alert must neither fail its job nor be lost.
        It is then raised in a transaction of its own, which sees the
        committed follower (and, for a keyed alert, the other job's
        activity), and stays raised even if the job rolls back later.
        ``refresh``: a keyed alert already open takes this note (the newest
        case), instead of keeping the first one's.
        """
        activity_type = self.env.ref(
            "mail.mail_activity_data_todo", raise_if_not_found=False
        )
        for channel in self:
            user = channel.user_id
            if not user or not channel.sudo()._scs_may_be_responsible(user):
                # archived, or no longer allowed to open the channel since
                # it was named: the alert is not sent where nobody acts on it
                user = self.env.ref("base.user_admin")
            values = {
                "activity_type_id": activity_type.id if activity_type else False,
                "summary": summary,
                "note": note,
                "user_id": user.id,
            }
            if key and channel._scs_has_activity(summary):
                if refresh:
                    channel._scs_open_activities(summary).write({"note": note})
                continue
            try:
                with self.env.cr.savepoint():
                    channel.sudo().activity_schedule(**values)
            except psycopg2.errors.UniqueViolation:
                _logger.info(
                    "channel %s: user %s was made a follower by another transaction;"
                    " the activity %r is raised on its own",
                    channel.id,
                    user.id,
                    summary,
                )
                with self.env.registry.cursor() as cr:
                    apart = channel.with_env(channel.env(cr=cr))
                    if not (key and apart._scs_has_activity(summary)):
                        apart.sudo().activity_schedule(**values)

    def _scs_has_activity(self, summary):
        """Whether the channel has an open activity with this summary."""
        return bool(
            self.env["mail.activity"].search_count(
                [
                    ("res_model", "=", "sync.channel"),
                    ("res_id", "=", self.id),
                    ("summary", "=", summary),
                ],
                limit=1,
            )
        )

    def _scs_open_activities(self, summary):
        return (
            self.env["mail.activity"]
            .sudo()
            .search(
                [
                    ("res_model", "=", "sync.channel"),
                    ("res_id", "in", self.ids),
                    ("summary", "=", summary),
                ]
            )
        )

    def _scs_resolve_activity(self, summary, feedback):
        """Mark done the channel's open activity of ``summary``: the
        condition it raised is over (a poll or a pass read the channel
        again), so that an operator is not left an alert about the past."""
        activities = self._scs_open_activities(summary)
        if activities:
            activities.action_feedback(feedback=feedback)

    def _scs_notify_dead_letter(self, event):
        """A dead letter alerts the channel's responsible user: one alert
        while the channel has any, naming the newest (it is marked done when
        the last one is retried, superseded or discarded, see
        ``_scs_dead_letters_gone``)."""
        self._scs_notify(
            _("Stock sync dead letters"),
            _(
                "A stock event could not be delivered after its retries "
                "(%(key)s: %(error)s). Open the channel's dead letters to retry "
                "or discard them.",
                key=event.idempotency_key,
                error=event.error or "",
            ),
            key="dead_letter",
            refresh=True,
        )

    def _scs_dead_letters_gone(self):
        """Mark done the dead-letter alert of those of these channels that
        have no dead letter left."""
        if not self:
            return
        self.env["sync.event"].flush_model(["channel_id", "state"])
        self.env.cr.execute(
            SQL(
                "SELECT DISTINCT channel_id FROM sync_event"
                " WHERE channel_id = ANY(%s) AND state = 'dead'",
                self.ids,
            )
        )
        still = {row[0] for row in self.env.cr.fetchall()}
        self.filtered(lambda c: c.id not in still)._scs_resolve_activity(
            _("Stock sync dead letters"),
            _("No dead letter left on the channel."),
        )
