# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""One product variant (SKU) published on one channel, and the push engine.

Serialisation per SKU: every job that publishes a SKU first locks the rows of
its bindings with ``FOR NO KEY UPDATE NOWAIT``. A job that finds them locked
(another worker is publishing the same SKU) or changed since its snapshot
retries a moment later without spending a retry, so pushes of one SKU never
race while different SKUs run in parallel. The lock is held across the HTTP
calls on purpose: that is the serialisation, and it is bounded by the
adapters' timeouts.

The quantity is computed when the job runs, never when it is enqueued, so a
delayed or retried job publishes today's number, not yesterday's.
"""

import logging
import math
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from html import escape

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, ValidationError
from odoo.tools import SQL

from odoo.addons.queue_job.exception import FailedJobError, RetryableJobError

from ..lib.adapters import (
    ChannelError,
    LiveLevel,
    StockUpdate,
    UnreachableError,
    get_adapter_class,
    wait_budget,
)
from ..lib.fanout import run_all
from ..lib.quantity import breakdown
from .job_store import (
    RECONCILE_PRIORITY,
    lock_rows_or_retry,
    retry_later,
    run_again_after_lost_connection,
)
from .sync_channel import _validate_ranges

_logger = logging.getLogger(__name__)

#: the errors of a push that may have landed all the same (``ILIKE``
#: patterns): no answer in time, or an answer cut short
UNKNOWN_OUTCOME_ERRORS = ("no answer within%", "timeout%", "%answer ended early%")
#: seconds a job waits before trying again a SKU another worker is publishing
#: (the holder is mostly a push or an apply run, of a fraction of a second:
#: a whole second, chained over a few holders, made a sale take seconds to
#: reach the channels when stock moved meanwhile)
LOCK_RETRY_SECONDS = 0.5


#: a push batch of at most this many bindings is live work, a larger one
#: bulk work (see ``_scs_push_batch_later``)
LIVE_BATCH_BINDINGS = 100
#: bindings whose listing ids one job reads (one call each)
LISTINGS_PER_JOB = 100
#: seconds before a deferred correction job began from which an inbound
#: event is taken as arrived since its batch compared (as the batch's own
#: ``RECENT_MARGIN``)
SOLD_MARGIN = 10


def _qty(value):
    """A quantity as the user typed it: every digit, no exponent (``%g``
    would print 1,234,567 as 1.23457e+06, and the breakdown would no longer
    add up to the number pushed)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class ChannelBinding(models.Model):
    _name = "channel.binding"
    _description = "Product on a Sales Channel"
    _order = "channel_id, product_id"
    _rec_name = "sku"
    _check_company_auto = True

    channel_id = fields.Many2one(
        "sync.channel",
        required=True,
        ondelete="cascade",
        index=True,
        check_company=True,
    )
    company_id = fields.Many2one(
        related="channel_id.company_id", store=True, index=True, precompute=True
    )
    channel_type = fields.Selection(related="channel_id.channel_type")
    product_id = fields.Many2one(
        "product.product",
        string="Product Variant",
        required=True,
        ondelete="cascade",
        index=True,
        domain="[('is_storable', '=', True)]",
        check_company=True,
    )
    active = fields.Boolean(default=True)
    sku = fields.Char(
        "Channel SKU",
        compute="_compute_sku",
        store=True,
        readonly=False,
        precompute=True,
        index=True,
        help="SKU of the listing on the channel (defaults to the internal reference).",
    )
    external_id = fields.Char(
        "External ID",
        index=True,
        help="Product / listing id on the channel (Amazon: none, the SKU is"
        " the listing; an ASIN is shared by several SKUs).",
    )
    external_variant_id = fields.Char(
        "External Variant ID",
        help="Variation id, inventory item id or offer id on the channel.",
    )
    external_location_id = fields.Char(
        "External Location ID", help="Overrides the channel's location id."
    )
    buffer_override = fields.Boolean(
        help="Use this binding's buffer instead of the channel's."
    )
    buffer_qty = fields.Float("Buffer", digits="Product Unit")
    use_max_qty = fields.Boolean("Cap Quantity")
    max_qty = fields.Float("Max Quantity", digits="Product Unit")
    allocation_pct = fields.Float(
        "Allocation (%)",
        default=100.0,
        help="Share of the free stock (after buffer and cap) offered on this channel.",
    )
    published_qty = fields.Integer(
        "Quantity to Publish",
        compute="_compute_published_qty",
        help="What Odoo would publish now.",
    )
    last_pushed_qty = fields.Integer("Last Pushed", readonly=True)
    last_pushed_at = fields.Datetime(readonly=True)
    last_push_ts = fields.Float(
        "Last Push (unix)",
        readonly=True,
        digits=(16, 3),
        help="Sub-second time of the last successful push (burst throttle).",
    )
    push_state = fields.Selection(
        [("new", "Never pushed"), ("ok", "In sync"), ("failed", "Failing")],
        default="new",
        readonly=True,
        required=True,
    )
    last_seen_qty = fields.Integer(
        "Last Seen on Channel",
        readonly=True,
        help="Last quantity the channel reported.",
    )
    last_seen_at = fields.Datetime(readonly=True)
    sequence = fields.Integer(
        "Push Sequence",
        readonly=True,
        default=0,
        help="Increases with every push; sent to the channel so that it can "
        "drop out-of-order deliveries.",
    )
    last_event_ts = fields.Float(
        "Newest Applied Event (unix)",
        readonly=True,
        digits=(16, 3),
        help="Logical time of the newest inbound event applied: older ones are stale.",
    )
    pending_event_id = fields.Many2one(
        "sync.event", readonly=True, ondelete="set null", index="btree_not_null"
    )
    event_ids = fields.One2many("sync.event", "binding_id", string="Events")
    quantity_explanation = fields.Html(
        "Why This Quantity",
        compute="_compute_quantity_explanation",
        sanitize=False,
        help="Every step from the stock in each location to the published number.",
    )

    _channel_product_uniq = models.Constraint(
        "UNIQUE(channel_id, product_id)",
        "A product variant can be bound only once per channel (an archived"
        " binding counts: unarchive it instead).",
    )
    _channel_sku_uniq = models.UniqueIndex(
        "(channel_id, sku) WHERE sku IS NOT NULL AND external_id IS NULL AND active",
        "This SKU is already bound on this channel: a listing known by its SKU"
        " alone takes one variant.",
    )
    _channel_external_uniq = models.UniqueIndex(
        "(channel_id, external_id, COALESCE(external_variant_id, ''))"
        " WHERE external_id IS NOT NULL",
        "This external id is already bound on this channel.",
    )

    #: see ``sync.channel.SETTING_RANGES``
    SETTING_RANGES = {
        "buffer_qty": (0.0, None),
        "max_qty": (0.0, None),
        "allocation_pct": (0.0, 100.0),
    }

    def init(self):
        """The sends marked outside a push job's transaction (see
        ``_scs_mark_sent``): no model (nothing reads them but the next push
        of their binding) and no foreign key (the job holds its bindings'
        rows locked while it marks them from another transaction)."""
        res = super().init()
        self.env.cr.execute(
            "CREATE TABLE IF NOT EXISTS stock_channel_sync_sent ("
            " binding_id integer NOT NULL, quantity integer NOT NULL,"
            " sent_ts double precision NOT NULL)"
        )
        self.env.cr.execute(
            "CREATE INDEX IF NOT EXISTS stock_channel_sync_sent_binding_idx"
            " ON stock_channel_sync_sent (binding_id, sent_ts)"
        )
        return res

    def _validate_fields(self, field_names, excluded_names=()):
        # create() hands a generator over, which super() would use up
        field_names = list(field_names)
        result = super()._validate_fields(field_names, excluded_names)
        _validate_ranges(self, field_names, excluded_names)
        return result

    @api.constrains("channel_id", "sku", "external_id", "active")
    def _check_sku_once(self):
        """A listing known by its SKU is bound once per channel: two
        variants pushed under one SKU would overwrite each other's number,
        and the channel's orders of it would all reserve the first one.
        On a channel that addresses listings by SKU (``listings_by_sku``:
        a generic shop, Amazon, eBay) that holds whatever ids the bindings
        carry; on the others (Shopify, WooCommerce) a binding with its
        listing's id is addressed by it.

        One query for the whole batch (Match Listings creates thousands at
        once). The database's unique index covers two SKU-only bindings,
        also created at the same moment; this also refuses one beside a
        binding of the same SKU that carries its own ids."""
        checked = self.filtered(
            lambda b: (
                b.active and b.sku and (not b.external_id or b._scs_listed_by_sku())
            )
        )
        if not checked:
            return
        self.flush_model(["channel_id", "sku", "active", "external_id"])
        self.env.cr.execute(
            SQL(
                """
                SELECT b.id FROM channel_binding b
                  JOIN channel_binding o
                    ON o.channel_id = b.channel_id AND o.sku = b.sku
                   AND o.id != b.id AND o.active
                 WHERE b.id = ANY(%s)
                 LIMIT 1
                """,
                checked.ids,
            )
        )
        row = self.env.cr.fetchone()
        if row:
            binding = self.browse(row[0])
            raise ValidationError(
                _(
                    "SKU %(sku)s is already bound on channel %(channel)s: a"
                    " listing known by its SKU takes one variant.",
                    sku=binding.sku,
                    channel=binding.channel_id.display_name,
                )
            )

    def _scs_listed_by_sku(self):
        """Whether the binding's channel sets listings by SKU, whatever
        other ids the binding carries (see ``listings_by_sku``)."""
        return get_adapter_class(self.channel_id.channel_type).listings_by_sku

    @api.constrains("channel_id", "sku", "external_id", "active")
    def _check_listing_named(self):
        """A binding names its listing: by SKU on a channel that addresses
        listings so, else by SKU or the listing's id. A binding naming none
        would be pushed under no listing, or another's."""
        unnamed = self.filtered(
            lambda b: (
                b.active and not b.sku and (not b.external_id or b._scs_listed_by_sku())
            )
        )
        if unnamed:
            raise ValidationError(
                _(
                    "%(product)s has no SKU to be listed under on %(channel)s:"
                    " give the binding the listing's SKU (or set the variant's"
                    " internal reference)%(ids)s.",
                    product=unnamed[0].sudo().product_id.display_name,
                    channel=unnamed[0].channel_id.display_name,
                    ids=""
                    if unnamed[0]._scs_listed_by_sku()
                    else _(", or the listing's external id"),
                )
            )

    @api.constrains("product_id", "active")
    def _check_product_storable(self):
        """Only a product whose stock Odoo tracks can be bound: of any other
        Odoo knows no quantity, so its channels would be told 0 and the
        listing shown sold out. The form's domain says so; this also holds
        for RPC and imports."""
        untracked = self.filtered(
            lambda b: b.active and not b.sudo().product_id.is_storable
        )
        if untracked:
            raise ValidationError(
                _(
                    "%(product)s does not track its stock (Track Inventory is"
                    " off): Odoo has no quantity to publish on %(channel)s."
                    " Track its inventory, or bind a product that does.",
                    product=untracked[0].sudo().product_id.display_name,
                    channel=untracked[0].channel_id.display_name,
                )
            )

    # -- compute --
    @api.depends("product_id.default_code")
    def _compute_sku(self):
        for binding in self:
            if not binding.sku:
                binding.sku = binding.product_id.default_code or False

    def _compute_published_qty(self):
        quantities = self._scs_quantities()
        for binding in self:
            info = quantities.get(binding.id)
            binding.published_qty = info.published if info else 0

    def _compute_quantity_explanation(self):
        for binding in self:
            binding.quantity_explanation = binding._scs_explain()

    def _scs_explain(self):
        """HTML breakdown: stock per location, reserved, rule steps, events."""
        self.ensure_one()
        channel = self.channel_id
        locations = channel._scs_stock_locations()
        rows = []
        if locations and self.product_id:
            self.env["stock.quant"].flush_model()
            self.env.cr.execute(
                SQL(
                    """
                    SELECT l.id, SUM(q.quantity), SUM(q.reserved_quantity)
                      FROM stock_quant q
                      JOIN stock_location l ON l.id = q.location_id
                     WHERE q.product_id = %s AND l.usage = 'internal'
                       AND l.parent_path LIKE ANY(%s)
                  GROUP BY l.id ORDER BY l.id
                    """,
                    self.product_id.id,
                    [f"{p}%" for p in locations.mapped("parent_path")],
                )
            )
            rows = self.env.cr.fetchall()
        Location = self.env["stock.location"]
        info = self._scs_quantities().get(self.id)
        header = (
            "<table class='table table-sm o_scs_why'><thead><tr>"
            "<th>Location</th><th>On hand</th><th>Reserved</th><th>Free</th>"
            "</tr></thead><tbody>"
        )
        lines = [header]
        for location_id, on_hand, reserved in rows:
            lines.append(
                f"<tr><td>{escape(Location.browse(location_id).display_name)}</td>"
                f"<td>{_qty(on_hand)}</td><td>{_qty(reserved)}</td>"
                f"<td>{_qty(on_hand - reserved)}</td></tr>"
            )
        lines.append("</tbody></table>")
        if info:
            steps = [
                (
                    _("Free quantity"),
                    f"{_qty(info.free)}"
                    if self.product_id.active
                    else _("0 (the product is archived: not for sale)"),
                ),
                (_("Buffer"), f"- {_qty(info.buffer)}"),
                (_("After buffer"), f"{_qty(info.after_buffer)}"),
                (
                    _("Cap"),
                    f"{_qty(info.max_qty)}" if info.max_qty is not None else _("none"),
                ),
                (_("After cap"), f"{_qty(info.after_cap)}"),
                (_("Allocation"), f"{_qty(info.allocation_pct)} %"),
                (_("After allocation"), f"{_qty(info.after_allocation)}"),
                (_("Published (rounded down, never below 0)"), f"{info.published}"),
            ]
            lines.append("<table class='table table-sm o_scs_steps'><tbody>")
            lines.extend(
                f"<tr><td>{escape(label)}</td><td class='text-end'>{value}</td></tr>"
                for label, value in steps
            )
            lines.append("</tbody></table>")
        events = self.env["sync.event"].search(
            [("binding_id", "=", self.id)], order="id desc", limit=5
        )
        if events:
            lines.append(f"<p><b>{escape(_('Last events'))}</b></p><ul>")
            lines.extend(
                f"<li>{escape(fields.Datetime.to_string(e.create_date))} "
                f"{escape(e.direction)} "
                f"{escape(e.kind)} {_qty(e.quantity)} "
                f"{escape(dict(e._fields['state'].selection).get(e.state, ''))}"
                f"{(' - ' + escape(e.reason)) if e.reason else ''}</li>"
                for e in events
            )
            lines.append("</ul>")
        return "".join(lines)

    # -- CRUD --
    @api.model_create_multi
    def create(self, vals_list):
        # the channel's company rules first: a unique constraint checked
        # before them would tell another company which products the channel
        # lists ("bound only once per channel")
        self.env["sync.channel"].browse(
            {vals["channel_id"] for vals in vals_list if vals.get("channel_id")}
        ).check_access("write")
        bindings = super().create(vals_list)
        bindings.product_id._scs_push_at_commit()
        # by hand or by Match Listings: the ids a push needs are read later
        bindings._scs_complete_listings_later()
        return bindings

    #: what says which listing of which channel the binding is: a change
    #: makes it a listing that was never pushed
    LISTING_FIELDS = (
        "channel_id",
        "product_id",
        "sku",
        "external_id",
        "external_variant_id",
        "external_location_id",
    )

    def unlink(self):
        """A deleted binding's pushes still waiting (failed, queued) are
        closed: nothing can send them any more, and their retry job ends on
        finding the binding gone."""
        self.env["sync.event"].sudo().search(
            [
                ("binding_id", "in", self.ids),
                ("direction", "=", "out"),
                ("state", "in", ("failed", "queued", "received")),
            ]
        )._scs_set_state("skipped", reason=_("not sent: its binding was deleted"))
        return super().unlink()

    def write(self, vals):
        """A change of the figure's rule is pushed at once; so is a change of
        the listing (another channel, product, SKU or external id): what was
        pushed and offered before went to the old one, so the binding starts
        as never pushed (its push is not skipped as "already in sync", and
        no order is checked against the old listing's offer)."""
        if vals.get("channel_id"):
            # the target channel's company rules first, as in create
            self.env["sync.channel"].browse(vals["channel_id"]).check_access("write")
        if vals.get("pending_event_id") and not self.env.su:
            # the push a binding waits on is one of its channel's: another
            # channel's event (of another company, say) would be closed as
            # superseded by this binding's next push, and named on it
            event = self.env["sync.event"].sudo().browse(vals["pending_event_id"])
            if any(b.channel_id != event.channel_id for b in self):
                raise AccessError(
                    _("A binding waits only on a push of its own channel.")
                )
        listing = [name for name in self.LISTING_FIELDS if name in vals]
        before = {b.id: [b[name] for name in listing] for b in self} if listing else {}
        res = super().write(vals)
        moved = self.filtered(
            lambda b: listing and [b[name] for name in listing] != before[b.id]
        )
        if moved:
            reset = {
                "push_state": "new",
                "last_pushed_qty": 0,
                "last_pushed_at": False,
                "last_push_ts": 0.0,
            }
            if "channel_id" in listing:
                # events are ordered per channel: another channel's clock
                reset["last_event_ts"] = 0.0
            moved.write(reset)
            moved.product_id._scs_push_at_commit()
            moved._scs_complete_listings_later()
        rule_fields = {
            "buffer_override",
            "buffer_qty",
            "use_max_qty",
            "max_qty",
            "allocation_pct",
            "active",
            "product_id",
            "channel_id",
        }
        if rule_fields & set(vals):
            self.product_id._scs_push_at_commit()
        return res

    # -- actions --
    def action_open_why(self):
        """Open the binding on its "why this quantity" breakdown."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _(
                "Why %(sku)s publishes %(qty)s",
                sku=self.sku or "",
                qty=self.published_qty,
            ),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "current",
        }

    def action_push_now(self):
        """Enqueue a push of these SKUs now, even if unchanged.

        The push runs as the superuser: only a user who may configure the
        bindings may ask for it (a public method is callable over RPC).
        """
        self.check_access("write")
        self.product_id._scs_push_at_commit(force=True)
        return True

    # -- quantity --
    def _scs_buffer(self):
        self.ensure_one()
        return self.buffer_qty if self.buffer_override else self.channel_id.buffer_qty

    def _scs_quantities(self):
        """``{binding id: QuantityBreakdown}``, one query per channel.

        An archived variant is not for sale (Odoo's own sales no longer
        offer it): its channels are offered none of its stock."""
        result = {}
        for channel in self.channel_id:
            bindings = self.filtered(lambda b, c=channel: b.channel_id == c)
            free = channel._scs_free_quantities(set(bindings.product_id.ids))
            for binding in bindings:
                result[binding.id] = breakdown(
                    free.get(binding.product_id.id, 0.0)
                    if binding.product_id.active
                    else 0.0,
                    buffer=binding._scs_buffer(),
                    max_qty=binding.max_qty if binding.use_max_qty else None,
                    allocation_pct=binding.allocation_pct,
                )
        return result

    # -- locking --
    def _scs_lock(self):
        """Lock these bindings' rows, or retry the job shortly.

        ``NOWAIT`` keeps a worker from sleeping on a lock; a serialisation
        failure means another job published these bindings after our snapshot
        was taken, so our numbers may be old: retry with a fresh snapshot.
        """
        if not self or set(self.ids) <= self.env.context.get(
            "scs_locked_binding_ids", frozenset()
        ):
            return  # no binding, or locked by this run already
        lock_rows_or_retry(
            self.env,
            "channel_binding",
            self.ids,
            "SKU busy",
            nowait=True,
            seconds=LOCK_RETRY_SECONDS,
        )

    # -- push engine --
    def _scs_push(
        self, changed_ts=None, force=False, kind="push", reasons=None, wait=None
    ):
        """Publish the current quantity of these bindings, concurrently.

        Returns a summary dict (pushed, skipped, failed) for the job result.
        Failing channels get their own retry job; the others are done.

        ``wait``: seconds the job waits for the channels (the SKU job: its
        locks hold every channel's binding of the SKU, so the next change of
        it waits for the slowest channel). A channel that has not answered
        by then counts as not answering: it is paused and its push goes to
        its retry job; the call ends in its thread, within the channel's own
        timeout, which the pause outlasts (no later push overtakes it).
        """
        bindings = self.filtered(
            lambda b: b.active and b.channel_id.active and b.channel_id.sync_enabled
        )
        bindings._scs_lock()
        quantities = bindings._scs_quantities()
        now = time.time()
        plan = []
        skipped = 0
        for binding in bindings:
            qty = quantities[binding.id].published
            if (
                not force
                and binding.push_state == "ok"
                and binding.last_pushed_qty == qty
                # the channel holds it still: its own sales since the push
                # took it down (see sync.event._scs_note_channel_sale)
                and (not binding.last_seen_at or binding.last_seen_qty == qty)
            ):
                skipped += 1
                continue
            if binding.pending_event_id and binding.push_state == "failed":
                # a retry job is pending; this push supersedes its event
                binding.pending_event_id._scs_supersede()
            plan.append((binding, qty))
        if not plan:
            return {"pushed": 0, "skipped": skipped, "failed": 0}
        events = self.env["sync.event"]._scs_create_outbound(
            [(binding, qty, kind) for binding, qty in plan],
            changed_ts,
            now,
            reasons=reasons,
        )
        tasks = {}
        # sends marked apart (see ``_scs_mark_sent``), and those that did
        # not land, unmarked at the end
        marks, not_landed = {}, []
        by_channel = {}
        # a throttle an adapter would wait out in place must leave the call
        # time to answer within the job's wait (see ``wait_budget``)
        budget = None if wait is None else wait / 2
        for (binding, qty), event in zip(plan, events, strict=True):
            by_channel.setdefault(binding.channel_id, []).append((binding, qty, event))
        # a channel that did not answer lately is not tried again here: its
        # pushes go to their retry jobs, due when its pause ends
        blocked, _claimed = (
            self.env["sync.channel"].browse([c.id for c in by_channel])._scs_may_send()
        )
        failed = 0
        for channel in [c for c in by_channel if c.id in blocked]:
            error = channel._scs_paused_error(blocked[channel.id])
            for binding, _qty, event in by_channel.pop(channel):
                failed += 1
                binding._scs_record_failure(event, error)
        for channel, items in by_channel.items():
            adapter = channel._scs_push_adapter(
                self.browse([binding.id for binding, _q, _e in items])
            )
            unconfirmed = (
                self.browse([b.id for b, _q, _e in items])._scs_unconfirmed_sends()
                if adapter.compares_previous
                else {}
            )
            updates = [
                binding._scs_update(qty, event, unconfirmed.get(binding.id, ()))
                for binding, qty, event in items
            ]
            if adapter.compares_previous:
                stamp = self._scs_mark_sent([(b.id, q) for b, q, _e in items])
                marks.update((b.id, stamp) for b, _q, _e in items)
            tasks[channel.id] = partial(_send, adapter, updates, budget)
        sent_ts = time.time()
        events.filtered(lambda e: e.state == "received").sudo().write(
            {"sent_ts": sent_ts, "state": "queued"}
        )
        outcomes = run_all(tasks, timeout=wait)
        for channel, items in by_channel.items():
            results, error = channel._scs_outcome(*outcomes[channel.id], wait)
            for index, (binding, qty, event) in enumerate(items):
                if error is None:
                    result = results[index]
                    item_error = result.error
                else:
                    result, item_error = None, error
                if item_error is None:
                    binding._scs_record_success(event, qty, result)
                else:
                    failed += 1
                    binding._scs_record_failure(event, item_error)
                    if marks.get(binding.id) and not _outcome_unknown(item_error):
                        not_landed.append((binding.id, marks[binding.id]))
        self._scs_unmark_sent(not_landed)
        return {"pushed": len(plan) - failed, "skipped": skipped, "failed": failed}

    def _scs_mark_sent(self, pairs):
        """Record ``[(binding id, quantity)]`` about to be sent to a
        compare-and-set channel, on a transaction of its own: the job's own
        record of the send (its event) goes if the job is rolled back after
        the channel applied it (a serialization failure, a killed worker),
        and the next push would take the channel's level, Odoo's own
        number, for units sold there, and keep them off sale. A mark counts
        until its binding's next confirmed level (``_scs_unconfirmed_sends``
        reads those sent since), a day at most (retention deletes it); one
        whose call certainly did not land goes at once (``_scs_unmark_sent``).
        Returns the marks' time."""
        now = time.time()
        with self.env.registry.cursor() as cr:
            cr.execute(
                SQL(
                    "INSERT INTO stock_channel_sync_sent (binding_id, quantity,"
                    " sent_ts) VALUES %s",
                    SQL(", ").join(
                        SQL("(%s, %s, %s)", b, int(q), now) for b, q in pairs
                    ),
                )
            )
        return now

    def _scs_unmark_sent(self, marks):
        """Drop the marks ``[(binding id, time)]`` of sends that certainly
        did not land (an HTTP error, a refusal): a level equal to one would
        be a sale there, not Odoo's own number. On a transaction of its
        own, as they were made (this job's snapshot does not hold them)."""
        if not marks:
            return
        with self.env.registry.cursor() as cr:
            for binding_id, stamp in marks:
                cr.execute(
                    SQL(
                        "DELETE FROM stock_channel_sync_sent"
                        " WHERE binding_id = %s AND sent_ts = %s",
                        binding_id,
                        stamp,
                    )
                )

    def _scs_unconfirmed_sends(self):
        """``{binding id: quantities}`` Odoo sent these bindings since their
        last confirmed level whose outcome it does not know: given up before
        the answer, timed out, or cut short (not an HTTP error answer or a
        refused connection, which certainly did not land). For a
        compare-and-set channel, a live level among them is one of Odoo's
        own pushes that landed, not
        a sale there (see ``StockUpdate.unconfirmed``). Those of a job
        rolled back after its call (``_scs_mark_sent``) too. One query; the
        last day only."""
        if not self:
            return {}
        self.env["sync.event"].flush_model(
            ["binding_id", "direction", "sent_ts", "state", "quantity"]
        )
        self.flush_recordset(["last_seen_at", "last_push_ts"])
        self.env.cr.execute(
            SQL(
                """
                SELECT sent.binding_id, array_agg(DISTINCT sent.quantity)
                  FROM (SELECT e.binding_id, e.quantity, e.sent_ts
                          FROM sync_event e
                         WHERE e.binding_id = ANY(%(ids)s) AND e.direction = 'out'
                           AND e.sent_ts > %(since)s AND e.state != 'applied'
                           AND (e.state = 'queued' OR e.error ILIKE ANY(%(unknown)s))
                     UNION ALL
                        -- a mark made before the binding's last confirmed
                        -- push is that push's or older: what it set is known
                        SELECT s.binding_id, s.quantity, s.sent_ts
                          FROM stock_channel_sync_sent s
                          JOIN channel_binding pb ON pb.id = s.binding_id
                         WHERE s.binding_id = ANY(%(ids)s) AND s.sent_ts > %(since)s
                           AND s.sent_ts > COALESCE(pb.last_push_ts, 0)
                       ) sent
                  JOIN channel_binding b ON b.id = sent.binding_id
                 WHERE b.last_seen_at IS NULL
                    OR sent.sent_ts >= EXTRACT(EPOCH FROM b.last_seen_at) - 1
              GROUP BY sent.binding_id
                """,
                ids=self.ids,
                since=time.time() - 86400,
                unknown=list(UNKNOWN_OUTCOME_ERRORS),
            )
        )
        return {
            binding_id: tuple(int(q) for q in quantities if q is not None)
            for binding_id, quantities in self.env.cr.fetchall()
        }

    def _scs_update(self, qty, event=None, unconfirmed=()):
        """The plain value handed to the adapter (a push, or a read reference)."""
        self.ensure_one()
        return StockUpdate(
            sku=self.sku or "",
            quantity=qty,
            external_id=self.external_id or "",
            external_variant_id=self.external_variant_id or "",
            external_location_id=self.external_location_id or "",
            sequence=event.sequence if event else 0,
            idempotency_key=(event.idempotency_key if event else "") or "",
            previous_quantity=self.last_seen_qty if self.last_seen_at else None,
            unconfirmed=tuple(unconfirmed),
            changed_at=(event.change_ts if event else None) or None,
        )

    def _scs_record_success(self, event, qty, result, earlier_attempts=0):
        """The channel took ``qty``; ``earlier_attempts``: failed sends of the
        event that its own count does not hold (a retry job's earlier runs)."""
        now = time.time()
        confirmed = result.quantity if result and result.quantity is not None else qty
        if self.push_state == "failed":
            # a later push landed: older dead letters of this binding are
            # moot; each stays a failure on the dashboard (discarded from
            # dead, as by hand): that push never reached the channel
            older = self.env["sync.event"].search(
                [
                    ("binding_id", "=", self.id),
                    ("direction", "=", "out"),
                    ("state", "in", ("dead", "failed", "queued")),
                    ("id", "!=", event.id),
                ]
            )
            reason = _("superseded by a later successful push")
            dead = older.filtered(lambda e: e.state == "dead")
            (older - dead)._scs_set_state("skipped", reason=reason)
            dead._scs_set_state("discarded", reason=reason, discarded_from="dead")
        self.write(
            {
                "last_pushed_qty": qty,
                "last_pushed_at": fields.Datetime.now(),
                "last_push_ts": now,
                "last_seen_qty": confirmed,
                "last_seen_at": fields.Datetime.now(),
                "push_state": "ok",
                "pending_event_id": False,
            }
        )
        reason = event.reason or (
            _("the channel kept %s", confirmed) if confirmed != qty else False
        )
        if event.error:
            # an earlier attempt's error is history once the push went
            # through: kept in the reason, not shown as the event's error
            retried = _(
                "delivered on attempt %(n)s, after: %(error)s",
                n=event.attempts + earlier_attempts + 1,
                error=event.error,
            )
            reason = f"{reason}; {retried}" if reason else retried
        event._scs_set_state(
            "applied",
            ack_ts=now,
            response=(result.response if result else "") or "",
            attempts=event.attempts + earlier_attempts + 1,
            reason=reason,
            error=False,
        )

    def _scs_record_failure(self, event, error):
        """Retryable: own retry job with backoff. Permanent: dead letter now."""
        retryable = getattr(error, "retryable", False) or isinstance(
            error, TimeoutError
        )
        message = str(error) or type(error).__name__
        if not isinstance(error, (ChannelError, TimeoutError)):
            _logger.exception("unexpected error pushing %s", self.sku, exc_info=error)
        newer = getattr(error, "newer_sequence", None)
        if newer:
            # the channel holds a newer sequence than Odoo's (a restored
            # database): Odoo's sequence moves above it, and this binding is
            # pushed again under a new one; the refused event says why
            self.env.cr.execute(
                SQL(
                    "SELECT setval('stock_channel_sync_push_seq', GREATEST("
                    "(SELECT last_value FROM stock_channel_sync_push_seq), %s))",
                    newer,
                )
            )
            self.write({"push_state": "failed", "pending_event_id": False})
            event._scs_set_state(
                "skipped",
                error=message,
                reason=_("the channel held a newer sequence: pushed again above it"),
                attempts=event.attempts + 1,
            )
            self._scs_enqueue_retry()
            return
        self.write({"push_state": "failed", "pending_event_id": event.id})
        if not retryable:
            event._scs_set_state("dead", error=message, attempts=event.attempts + 1)
            self.channel_id._scs_notify_dead_letter(event)
            return
        event._scs_set_state("failed", error=message, attempts=event.attempts + 1)
        delay = getattr(error, "retry_after", None)
        self.channel_id._scs_told_to_wait(error)
        self._scs_enqueue_retry(delay, reschedule=delay is not None)

    def _scs_enqueue_retry(self, delay=None, reschedule=False):
        """The binding's retry job; one per binding (its identity key), so a
        failure while one waits is merged into it. ``reschedule``: that job
        moves to this retry's time, later or earlier than it was: a
        Retry-After names when the channel takes the next call (a job due
        sooner would call too early, one parked by an ended pause would
        wait minutes for nothing), and Retry is a user asking for now."""
        self.ensure_one()
        # queue_job takes an int as seconds, and the runner reads an eta to
        # the microsecond: a fraction of a second is given as a timedelta
        eta = timedelta(seconds=max(0.1, delay) if delay else 1)
        key = f"stock_channel_sync.binding.{self.id}"
        self.with_delay(
            eta=eta,
            max_retries=self.channel_id.max_retries or 8,
            identity_key=key,
            description=f"Retry push of {self.sku} to {self.channel_id.name}",
        )._scs_job_push_binding()
        if reschedule:
            waiting = (
                self.env["queue.job"]
                .sudo()
                .search([("identity_key", "=", key), ("state", "=", "pending")])
            )
            # to the microsecond, as queue_job stores an eta (Odoo's now()
            # drops them: up to a second before a Retry-After); the job
            # just enqueued has that time already
            when = datetime.now(timezone.utc).replace(tzinfo=None) + eta
            waiting.filtered(
                lambda job: not job.eta or abs((job.eta - when).total_seconds()) > 0.5
            ).write({"eta": when})

    # -- jobs --
    def _scs_job_push_corrections(self, reasons=None):
        """Push Odoo's number over the channel edits an apply run found, or
        over the drift a reconciliation batch found (``reasons``: the
        events' reason by binding id, as text).

        One concurrent round for the run's edits (see
        ``sync.channel._scs_push_corrections``); their events are of kind
        ``correction``. A binding locked by another job makes this job retry.
        """
        reasons = {int(b): reason for b, reason in (reasons or {}).items()}
        bindings = self.exists()
        sold = bindings._scs_sold_since_compared() if reasons else self.browse()
        result = (bindings - sold)._scs_push(
            force=True, kind="correction", reasons=reasons or None
        )
        if sold:
            return (
                f"corrections: {result}; left to the push of a sale since:"
                f" {', '.join(sold.mapped('sku'))}"
            )
        return f"corrections: {result}"

    def _scs_sold_since_compared(self):
        """Those of these bindings (a reconciliation's corrections, pushed
        after its batch committed) whose channel shows less than Odoo
        publishes and has sent an inbound event of them not applied yet, or
        recorded since this job began: a sale since the comparison, which
        Odoo's number, pushed now, would offer again. Its own job pushes
        once it is reserved (as the batch leaves such a SKU alone)."""
        quantities = self._scs_quantities()
        lower = self.filtered(
            lambda b: b.last_seen_at and b.last_seen_qty < quantities[b.id].published
        )
        since = fields.Datetime.subtract(fields.Datetime.now(), seconds=SOLD_MARGIN)
        sold = self.browse()
        for channel in lower.channel_id:
            sold |= self.browse(
                [
                    b.id
                    for b in channel._scs_bindings_awaiting_inbound(
                        lower.filtered(lambda b, c=channel: b.channel_id == c),
                        since=since,
                    )
                ]
            )
        return sold

    def _scs_complete_listings_later(self):
        """Read, in a job, the ids a push needs that the channel's catalogue
        read does not give (eBay's offers, see ``complete_listing``): one
        call per binding, which has no place in the user's request."""
        todo = self.filtered(
            lambda b: (
                b.active
                and not b.external_variant_id
                and (b.sku or b.external_id)
                and get_adapter_class(b.channel_id.channel_type).completes_listings
            )
        )
        for channel in todo.channel_id:
            bindings = todo.filtered(lambda b, c=channel: b.channel_id == c)
            for start in range(0, len(bindings), LISTINGS_PER_JOB):
                bindings[start : start + LISTINGS_PER_JOB].with_delay(
                    description=f"Read the listing ids of {channel.name}"
                )._scs_job_complete_listings()

    def _scs_job_complete_listings(self):
        """Fill each binding's ids from its listing on the channel. A binding
        that gets them is a listing never pushed (see ``write``): it is
        pushed, offers included."""
        bindings = self.exists().filtered(lambda b: not b.external_variant_id)
        if not bindings:
            return "nothing to read"
        channel = bindings.channel_id
        adapter = channel._scs_adapter()
        found = 0
        for binding in bindings:
            level = LiveLevel(
                sku=binding.sku or "",
                quantity=0,
                external_id=binding.external_id or "",
            )
            try:
                level = adapter.complete_listing(level)
            except ChannelError as err:
                if err.retryable:
                    raise retry_later(err) from err
                channel._scs_notify(
                    _("Listing ids not read"),
                    _(
                        "The channel refused to give the listing ids of %(sku)s:"
                        " %(error)s. Until they are entered on its binding, a"
                        " push may not reach every place the channel lists it.",
                        sku=binding.sku,
                        error=err,
                    ),
                    key=f"listing:{binding.id}",
                )
                continue
            if not level.external_variant_id:
                continue
            try:
                with self.env.cr.savepoint():
                    binding.write(
                        {
                            "external_variant_id": level.external_variant_id,
                            "external_id": binding.external_id or level.external_id,
                        }
                    )
            except ValidationError as err:
                # a binding the rules refuse as it is (bound before them: two
                # variants under one SKU) is named, the others completed
                channel._scs_notify(
                    _("Listing ids not read"),
                    _(
                        "The listing ids of %(sku)s could not be kept: %(error)s",
                        sku=binding.sku,
                        error=err,
                    ),
                    key=f"listing:{binding.id}",
                )
                continue
            found += 1
        return f"{found} of {len(bindings)} listing(s) completed"

    def _scs_push_batch_later(self, force, description, eta=None):
        """Enqueue ``_scs_job_push_batch`` for these bindings.

        A batch of a few bindings (a small shop's settings changed, a paused
        one resumed) is live work: pushed at once, beside the SKU pushes.
        A larger one is bulk work, as a pass's batches (``root.channel_sync.
        reconcile``, lower priority): the batches of a large catalogue would
        otherwise take every slot for seconds each, holding every other
        channel's sales behind them."""
        live = len(self) <= LIVE_BATCH_BINDINGS
        self.with_delay(
            eta=eta,
            priority=None if live else RECONCILE_PRIORITY,
            channel="root.channel_sync" if live else "root.channel_sync.reconcile",
            description=description,
        )._scs_job_push_batch(force=bool(force))

    def _scs_job_push_batch(self, force=False):
        """Push a batch of one channel's bindings (``sync.channel.action_push_all``).

        One concurrent round under the locks of these bindings: per-SKU jobs
        of the same bindings wait for it, so no push of a SKU overtakes
        another. Bindings already showing their number are skipped, unless
        ``force`` (*Push All Now*). A
        binding another job holds (a sale being pushed) is left to a batch
        of its own a moment later: waiting for all of them to be free at
        once could take as long as a flash sale lasts.
        """
        bindings = self.exists()
        free = self.browse(
            lock_rows_or_retry(
                self.env,
                "channel_binding",
                bindings.ids,
                "SKU busy",
                seconds=LOCK_RETRY_SECONDS,
                skip_locked=True,
            )
        )
        busy = bindings - free
        if busy:
            busy._scs_push_batch_later(
                force,
                f"Push {len(busy)} busy binding(s) again",
                eta=timedelta(seconds=LOCK_RETRY_SECONDS),
            )
        if force and free:
            free._scs_note_live_levels()
        summary = free.with_context(
            scs_locked_binding_ids=frozenset(free.ids)
        )._scs_push(force=force)
        summary["busy"] = len(busy)
        return (
            "pushed {pushed}, unchanged {skipped}, failed {failed}, busy {busy}".format(
                **summary
            )
        )

    def _scs_levels_seen(self, levels):
        """``{binding: quantity}``: what the channel's ``LiveLevel`` values
        say each of these bindings holds (absent: it reports none)."""
        # ids and SKUs apart: a numeric SKU may be another listing's id
        by_id, by_sku = {}, {}
        for level in levels:
            for key in (level.external_variant_id, level.external_id):
                if key:
                    by_id.setdefault(str(key), level.quantity)
            if level.sku:
                by_sku.setdefault(str(level.sku), level.quantity)
        seen = {}
        for binding in self:
            # a variation's own id, else its SKU: the product id it shares
            # with its siblings (WooCommerce reports a variation's level
            # under its parent too) would read a sibling's level for one
            # that reports none (a variation selling without a stock level)
            own_id = binding.external_variant_id or binding.external_id
            if own_id and str(own_id) in by_id:
                seen[binding] = by_id[str(own_id)]
            elif binding.sku and str(binding.sku) in by_sku:
                seen[binding] = by_sku[str(binding.sku)]
        return seen

    def _scs_note_live_levels(self):
        """*Push All Now* on a channel that compares before it sets
        (Shopify): what the channel holds, read first, is the compare
        value, so that a shop edited by hand or restored from a backup gets
        Odoo's number, where the last figure Odoo saw would fail the compare
        and the hand edit be taken for units sold there. A read that fails
        leaves the compare value as it was (the pushes report the channel's
        error themselves). ``self``: bindings of one channel.

        Not for a binding that an order of the channel not reserved in Odoo
        names (queued, or failed to apply: a dead letter): its lower level
        is those units sold, as for the reconciliation; the compare against
        what Odoo last saw keeps them off sale."""
        channel = self.channel_id
        channel.ensure_one()
        adapter = channel._scs_adapter()
        if not adapter.compares_previous:
            return
        if channel.id in channel._scs_may_send()[0]:
            # paused: a read would hold this job (and its bindings) for the
            # timeout; its pushes wait for the channel too
            return
        try:
            levels = list(adapter.read_quantities([b._scs_update(0) for b in self]))
        except ChannelError as err:
            _logger.info(
                "channel %s: levels not read before Push All Now: %s", channel.id, err
            )
            return
        seen_of = self._scs_levels_seen(levels)
        awaiting = set(
            channel._scs_bindings_awaiting_inbound(
                [b for b, seen in seen_of.items() if seen != b.last_seen_qty]
            )
        )
        now = fields.Datetime.now()
        for binding, seen in seen_of.items():
            if binding in awaiting:
                continue
            if seen != binding.last_seen_qty or not binding.last_seen_at:
                binding.write({"last_seen_qty": seen, "last_seen_at": now})

    def _scs_job_push_binding(self):
        """Retry job of one failed binding: push today's number again.

        A retryable error raises ``RetryableJobError`` so that queue_job
        applies the ``retry_pattern`` (backoff with jitter, as data) or the
        channel's Retry-After; after the last retry the job fails and
        ``_scs_on_push_failed`` turns the event into a dead letter.
        """
        binding = self.exists()
        if not binding:
            # deleted while its retry waited: its events were closed then
            return "binding deleted"
        binding.ensure_one()
        if not (
            binding.active
            and binding.channel_id.active
            and binding.channel_id.sync_enabled
        ):
            # the event waiting for this retry (a dead letter retried by
            # hand) is closed, not left queued with no job to send it
            pending = binding.pending_event_id.filtered(
                lambda e: e.state in ("queued", "failed")
            )
            pending._scs_set_state(
                "skipped",
                reason=_("not sent: the binding, its channel or Push Stock is off"),
            )
            return "binding or channel inactive"
        binding._scs_lock()
        qty = binding._scs_quantities()[binding.id].published
        event = binding.pending_event_id
        if (
            binding.push_state == "ok"
            and binding.last_pushed_qty == qty
            and (not binding.last_seen_at or binding.last_seen_qty == qty)
        ):
            # the event waiting for this retry is closed: nothing is to send
            event.filtered(lambda e: e.state in ("queued", "failed"))._scs_set_state(
                "skipped", reason=_("already in sync: the channel holds %s", qty)
            )
            binding.pending_event_id = False
            return "already in sync"
        # checked once there is something to send: a job that claims the
        # channel's probe sends
        blocked, claimed = binding.channel_id._scs_may_send(probe=True)
        if blocked:
            # the channel is paused, or another job is trying it: this
            # attempt counts (a channel that stays down ends in a dead letter)
            seconds = blocked[binding.channel_id.id]
            raise RetryableJobError(
                str(binding.channel_id._scs_paused_error(seconds)),
                seconds=max(1, math.ceil(seconds)),
            )
        job_uuid = self.env.context.get("job_uuid")
        # this job's earlier runs that failed sending this event (queue_job
        # counts them; the event's own count was rolled back with each run)
        earlier = 0
        if (
            not event
            or event.state not in ("failed", "queued")
            or event.quantity != qty
        ):
            if event:
                event._scs_supersede()
            event = self.env["sync.event"]._scs_create_outbound(
                [(binding, qty, "push")],
                event.change_ts if event else None,
                time.time(),
            )
            binding.pending_event_id = event
        elif job_uuid:
            job = self.env["queue.job"].sudo().search([("uuid", "=", job_uuid)])
            earlier = job.retry if len(job) == 1 else 0
        event.sudo().write(
            {"sent_ts": time.time(), "job_uuid": job_uuid or event.job_uuid}
        )
        adapter = binding.channel_id._scs_push_adapter(binding)
        stamp = None
        try:
            unconfirmed = (
                binding._scs_unconfirmed_sends().get(binding.id, ())
                if adapter.compares_previous
                else ()
            )
            stamp = (
                binding._scs_mark_sent([(binding.id, qty)])
                if adapter.compares_previous
                else None
            )
            result = adapter.set_quantity(binding._scs_update(qty, event, unconfirmed))
        except ChannelError as err:
            if stamp and not _outcome_unknown(err):
                binding._scs_unmark_sent([(binding.id, stamp)])
            if isinstance(err, UnreachableError):
                binding.channel_id._scs_pause(err)
            binding.channel_id._scs_told_to_wait(err)
            if err.retryable:
                raise retry_later(err) from err
            raise FailedJobError(str(err)) from err
        binding.channel_id.browse(list(claimed))._scs_answered()
        binding._scs_record_success(event, qty, result, earlier)
        return f"pushed {qty}"

    def _scs_pushed_again_since(self, job_uuid):
        """Whether the binding has a live retry job other than ``job_uuid``
        (found dead): its waiting push is that job's, not the dead one's.
        A push merged into the dead job while it waited (its key) is the
        dead job's own, and becomes its dead letter."""
        self.ensure_one()
        return bool(
            self.env["queue.job"]
            .sudo()
            .search_count(
                [
                    ("identity_key", "=", f"stock_channel_sync.binding.{self.id}"),
                    ("state", "in", ("pending", "enqueued", "started")),
                    ("uuid", "!=", job_uuid or ""),
                ],
                limit=1,
            )
        )

    def _scs_on_push_failed(self, exc_name=None, exc_message=None, exc_info=None, **kw):
        """queue_job ``on_fail`` hook: the retry job is dead, so is its event;
        unless the job only lost its database connection: it runs again."""
        job_uuid = self.env.context.get("job_uuid")
        for binding in self.exists():
            event = binding.pending_event_id
            if not event:
                continue
            if kw.get("found_dead") and binding._scs_pushed_again_since(job_uuid):
                # found dead late: the binding waits on a newer push since,
                # with a retry job of its own
                continue
            delay = run_again_after_lost_connection(
                binding.env, f"stock_channel_sync.binding.{binding.id}", exc_name
            )
            if delay:
                binding._scs_enqueue_retry(delay)
                continue
            job = self.env["queue.job"].search(
                [("identity_key", "=", f"stock_channel_sync.binding.{binding.id}")],
                order="id desc",
                limit=1,
            )
            event._scs_set_state(
                "dead",
                error=exc_message or exc_name or _("push failed"),
                attempts=event.attempts + (job.retry if job else 1),
                job_uuid=job.uuid if job else event.job_uuid,
            )
            binding.channel_id._scs_notify_dead_letter(event)


def _outcome_unknown(error):
    """Whether a push that failed with ``error`` may have landed all the
    same (``UNKNOWN_OUTCOME_ERRORS``): no answer in time, an answer cut
    short."""
    if isinstance(error, TimeoutError):
        return True
    text = str(error).lower()
    for pattern in UNKNOWN_OUTCOME_ERRORS:
        # the ILIKE patterns: a leading % matches anywhere, else the start
        core = pattern.strip("%").lower()
        if core in text if pattern.startswith("%") else text.startswith(core):
            return True
    return False


def _send(adapter, updates, budget):
    """One channel's share of a push, in a thread of the shared pool."""
    with wait_budget(budget):
        return adapter.set_quantities(updates)
