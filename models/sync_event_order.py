# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What an order event does to Odoo's stock.

An order holds an outgoing transfer per channel and external order (one per
warehouse when no single warehouse of the channel covers it): reserved when
the order arrives, brought to the newest event's lines when the order is
edited, released when it is cancelled or refunded with restock. An order for
more than the channel offered is an oversell incident.
"""

import json
import time
from datetime import datetime, timezone

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..lib.adapters import ChannelError
from .job_store import lock_rows_or_retry, retry_later
from .sync_event import DEFERRED


def _per_binding(known):
    """An order's known lines summed per binding, in order of appearance.

    A SKU on several lines of one order (a marketplace splits lines by
    price, gift wrap or bundle) is one move to reserve, and one quantity to
    hold against what the channel was offered: line by line, two lines of 3
    would each pass an offer of 5.

    Each total is rounded to Odoo's precision for quantities, as a move
    stores it: 0.001 unit is nothing to Odoo, and must be nothing to the
    oversell check too (a reservation of 0 would look short).
    """
    totals = {}
    for line, binding in known:
        totals[binding] = totals.get(binding, 0.0) + float(line.get("quantity") or 0)
    return [
        (binding, binding.product_id.uom_id.round(qty) if binding else qty)
        for binding, qty in totals.items()
    ]


def _reserved_ts(pickings):
    """When an order's transfers were first created (unix seconds)."""
    dates = [p.create_date for p in pickings if p.create_date]
    return min(dates).replace(tzinfo=timezone.utc).timestamp() if dates else None


def _below_precision(known):
    """``(lines, dropped)``: ``known`` without the bindings whose lines ask for
    nothing once rounded to Odoo's precision; ``dropped`` names those that
    asked for a fraction below it (a line of 0 asks for nothing, and is no
    mistake: a shop may keep a removed line at 0)."""
    totals = {}
    for line, binding in known:
        totals[binding] = totals.get(binding, 0.0) + float(line.get("quantity") or 0)
    dropped = []
    for binding, qty in totals.items():
        if binding.product_id.uom_id.is_zero(qty) and qty:
            dropped.append(_qty_label(binding, qty))
    kept = [
        (line, binding)
        for line, binding in known
        if not binding.product_id.uom_id.is_zero(totals[binding])
    ]
    return kept, dropped


def _qty_label(binding, qty):
    """``"2 SKU"``: a quantity of a binding, as reasons name it."""
    return f"{qty:g} {binding.sku or binding.product_id.display_name}"


#: seconds of clock difference allowed between a channel's event times and
#: Odoo's when telling which events of an order retention may have deleted
HISTORY_MARGIN = 3600


def _is_line_refund(order):
    """A refund that names the lines it restocks: it adds to the order's
    other events (each releases its own lines, once) instead of replacing
    them."""
    return order.get("status") == "refunded" and bool(order.get("lines"))


class NoReserveSource(UserError):
    """The channel has nowhere to reserve an order from (its company has no
    warehouse yet, none of the chosen ones is left): no retry can help
    until one exists, so the event needs attention, not retries."""


class SyncEventOrder(models.Model):
    """Orders of the inbound event log: reserve, follow, release."""

    _inherit = "sync.event"

    def _scs_order_lines(self, order, bindings=None):
        """``[(line, binding or an empty recordset)]`` for an order's lines."""
        return [
            (
                line,
                self._scs_find_binding(
                    line.get("sku"),
                    line.get("external_id"),
                    line.get("external_variant_id"),
                    bindings,
                ),
            )
            for line in order.get("lines") or []
        ]

    def _scs_order_history(self, order_id):
        """``[(event, order data)]``: the other applied events of this
        event's order, and its later states that found nothing to follow
        (skipped), oldest first (one query for the checks below)."""
        events = self.search_fetch(
            [
                ("id", "!=", self.id),
                ("channel_id", "=", self.channel_id.id),
                ("direction", "=", "in"),
                ("kind", "in", ("order", "cancel")),
                ("external_ref", "=", order_id),
                ("state", "in", ("applied", "skipped")),
            ],
            ["data", "event_ts", "state", "idempotency_key"],
            order="event_ts, id",
        )
        return [
            (event, json.loads(event.data or "{}").get("order") or {})
            for event in events
        ]

    def _scs_later_state(self, history):
        """The newest later state of this order that came before it and
        found no reservation to follow (Shopify's ``orders/updated`` delivered
        before ``orders/create``): ``(event, order data)`` or ``None``."""
        if not self.event_ts:
            return None
        later = [
            (event, order)
            for event, order in history
            if event.state == "skipped"
            and order.get("follow_only")
            and event.event_ts
            and event.event_ts > self.event_ts
        ]
        return later[-1] if later else None

    def _scs_newer_applied(self, applied, own=None):
        """Is an event of the same order in ``applied`` with a later time?

        A refund of lines does not count: it takes its lines out of the
        order, whatever came before, so an order delivered after it is still
        reserved (less those lines, see ``_scs_less_refunded``). A cancel of
        the whole order wins a tie: an order cannot be placed after it was
        cancelled in the same instant (channels stamp to the second), so a
        state of the order stamped the same as an applied cancel is older.
        """
        return bool(self._scs_newer_events(applied, own))

    def _scs_newer_events(self, applied, own=None):
        """The events of ``applied`` that make this one stale (see above).

        A deletion the shop confirmed does not count against a state of the
        order the shop said is live again since (``restored``)."""
        if not self.event_ts:
            return []
        own = own or {}
        cancels = own.get("status") == "cancelled"
        return [
            (event, order)
            for event, order in applied
            if not _is_line_refund(order)
            and not (own.get("restored") and order.get("confirmed_deleted"))
            and (
                event.event_ts > self.event_ts
                or (
                    event.event_ts == self.event_ts
                    and order.get("status") == "cancelled"
                    and not cancels
                )
            )
        ]

    def _scs_only_deleted_since(self, applied, order):
        """Whether this open state of the order is older than confirmed
        deletions only (WooCommerce's ``order.deleted``).

        A deletion carries no time: it is ordered by its arrival, which
        comes after the trash, by a second or more when the shop's webhooks
        queue. A restore in between is stamped before it (to the second),
        so it would look older than the deletion it undoes, and the order,
        open again in the shop, would stay released. The shop is asked,
        as for the deletion itself: an order it still has in the trash
        keeps this state stale; one it has open again is reserved."""
        if self.kind != "order" or order.get("status") != "open":
            return False
        if order.get("restored") is not None:
            return False
        newer = self._scs_newer_events(applied, order)
        return bool(newer) and all(o.get("confirmed_deleted") for _e, o in newer)

    def _scs_less_refunded(self, applied, known, bindings=None):
        """``known`` less the lines that the restocking refunds in ``applied``
        took out before anything was reserved: ``(lines, refunded)``.

        Called only when the order holds no transfer. A refund delivered
        before its order (or an order delivered late) found nothing to
        release; reserving the whole order then would hold units that are
        back in stock, and one that is never reserved would offer units that
        are sold. A refund that did release from a transfer since cancelled
        (every line refunded) is counted the same way, and leaves nothing to
        reserve. ``refunded`` names what was taken out.
        """
        refund_lines = [
            (line, binding)
            for _event, order in applied
            if _is_line_refund(order) and order.get("restock") is not False
            for line, binding in self._scs_order_lines(order, bindings)
            if binding
        ]
        if not refund_lines:
            return known, ""
        refunded = dict(_per_binding(refund_lines))
        lines = []
        for binding, qty in _per_binding(known):
            rest = qty - refunded.get(binding, 0.0)
            if binding.product_id.uom_id.compare(rest, 0) > 0:
                lines.append(({"sku": binding.sku, "quantity": rest}, binding))
        taken = ", ".join(_qty_label(binding, qty) for binding, qty in refunded.items())
        return lines, taken

    def _scs_open_and_empty(self, order_id, applied, bindings=None):
        """Is this order open here, holding nothing to follow?

        A state that only follows a reservation (Shopify's ``orders/updated``)
        reserves what it adds to such an order:

        - an order an edit emptied: an edit that takes every unit out (a
          Shopify order keeps its line items, at a current quantity of 0)
          cancels its transfer, but the order is still open;
        - an order whose creation named no SKU bound here (recorded as
          needing attention), to which an edit adds one.

        An order cancelled or refunded as a whole, or one whose transfer was
        cancelled in Odoo while it still held units, is not reserved again
        that way, nor one never recorded here.
        """
        states = [order for _event, order in applied if not _is_line_refund(order)]
        if states:
            if states[-1].get("status") in ("cancelled", "refunded"):
                return False
            known = [
                (line, b)
                for line, b in self._scs_order_lines(states[-1], bindings)
                if b
            ]
            if not known:
                return False
            rest, _refunded = self._scs_less_refunded(applied, known, bindings)
            return not any(
                binding.product_id.uom_id.compare(qty, 0) > 0
                for binding, qty in _per_binding(rest)
            )
        return bool(
            self.search_count(
                [
                    ("id", "!=", self.id),
                    ("channel_id", "=", self.channel_id.id),
                    ("direction", "=", "in"),
                    ("kind", "=", "order"),
                    ("external_ref", "=", order_id),
                    ("state", "=", "attention"),
                ],
                limit=1,
            )
        )

    def _scs_not_reserved_again(self, order, order_id, applied, bindings=None):
        """Why this state of an order that holds no transfer must not reserve
        it (a reason), or ``None``.

        - A state that only follows a reservation (Shopify's
          ``orders/updated``) reserves an open order that holds nothing to
          follow only (see ``_scs_open_and_empty``).
        - A whole state (WooCommerce, generic) of an order whose transfer was
          cancelled in Odoo while it held units: someone here decided not to
          ship it, and an update of the order (completed, shipped, a note)
          does not undo that. An order this module released (cancelled,
          refunded, or emptied by an edit) is reserved again when the
          channel reopens it.
        """
        if order.get("follow_only"):
            if self._scs_open_and_empty(order_id, applied, bindings):
                return None
            return _(
                "a later state of an order that holds no reservation here:"
                " only its creation or payment reserves it"
            )
        if not self._scs_cancelled_in_odoo(order_id):
            return None
        states = [data for _event, data in applied if not _is_line_refund(data)]
        if states and states[-1].get("status") in ("cancelled", "refunded"):
            # the channel cancelled the order since: reopened there, it is
            # sold again
            return None
        return _(
            "the order's transfer was cancelled in Odoo: an update of the"
            " order does not reserve it again"
        )

    def _scs_held_back(self, order, order_id, applied, bindings=None):
        """``(state, reason, result)`` of an order holding no transfer that
        is not reserved: placed before the channel's cutoff, released for
        good here, or older than its history; else ``None``."""
        placed = self._scs_placed_before_cutoff(order)
        if placed:
            reason = _(
                "order placed %(placed)s, before the channel's order cutoff"
                " (%(cutoff)s): not reserved",
                placed=placed,
                cutoff=self.channel_id.order_cutoff,
            )
            return "skipped", reason, "before cutoff"
        not_again = self._scs_not_reserved_again(order, order_id, applied, bindings)
        if not_again:
            return "skipped", not_again, "not held"
        beyond = self._scs_released_beyond_history(order_id, applied)
        if beyond:
            return "attention", beyond, "older than its history"
        return None

    def _scs_released_beyond_history(self, order_id, applied):
        """Why this state of an order, older than the event log keeps an
        order's history, must not reserve it (a reason), or ``None``.

        Retention deletes a closed order's events after
        ``event_retention_days``. Its transfer outlives them: one the
        channel's cancel (or refunds) released, with no event left to say
        so, leaves a state older than that cancel nothing to be stale
        against, and a redelivery of it (a shop resending old messages, a
        Replay of the kept original) would sell the order again. A state
        that old, beside a released transfer that its history no longer
        explains, needs a person: it is not reserved. A state recorded
        within the horizon is ordered as usual: any newer event of the
        order is still in the log (it was recorded after it happened)."""
        if not self.event_ts:
            return None
        days = self._scs_retention_days("event_retention_days", 30)
        horizon = time.time() - days * 86400 + HISTORY_MARGIN
        if self.event_ts >= horizon:
            return None
        if any(
            data.get("status") in ("cancelled", "refunded") or _is_line_refund(data)
            for _event, data in applied
        ):
            # the release is in the log: ordered against it as usual
            return None
        released = (
            self.env["stock.picking"]
            .sudo()
            .search_count(
                [
                    ("scs_channel_id", "=", self.channel_id.id),
                    ("scs_external_order_id", "=", order_id),
                    ("state", "=", "cancel"),
                ],
                limit=1,
            )
        )
        if not released:
            return None
        return _(
            "an order state older than the event log keeps an order's history"
            " (%(days)s days), and the order's transfer was released by a"
            " state no longer in the log: not reserved again. Check the order"
            " on the channel; if it is sold, reserve it by hand.",
            days=days,
        )

    def _scs_cancelled_in_odoo(self, order_id):
        """Whether a transfer of this order was cancelled by someone in Odoo
        (not released by the channel's own cancel): a fact kept on the
        transfer, which outlives the event log's retention."""
        return bool(
            self.env["stock.picking"]
            .sudo()
            .search_count(
                [
                    ("scs_channel_id", "=", self.channel_id.id),
                    ("scs_external_order_id", "=", order_id),
                    ("scs_cancelled_in_odoo", "=", True),
                ],
                limit=1,
            )
        )

    def _scs_refund_released(self):
        """Whether another event of this refund (its original, or another
        replay of it) was applied: a line refund is never stale, since
        refunds add up, so a replay of one would release its lines again."""
        base = self.idempotency_key.split(":replay:", 1)[0]
        return bool(
            self.search_count(
                [
                    ("channel_id", "=", self.channel_id.id),
                    ("direction", "=", "in"),
                    ("state", "=", "applied"),
                    ("id", "!=", self.id),
                    "|",
                    ("idempotency_key", "=", base),
                    ("idempotency_key", "=like", f"{base}:replay:%"),
                ],
                limit=1,
            )
        )

    def _scs_placed_before_cutoff(self, order):
        """When the order was placed (naive UTC), if before the channel's
        order cutoff; else ``None`` (no cutoff, or no placing date)."""
        cutoff = self.channel_id.order_cutoff
        placed = order.get("created_at")
        if not cutoff or not placed:
            return None
        placed = datetime.fromisoformat(placed)
        if placed.tzinfo is not None:
            placed = placed.astimezone(timezone.utc).replace(tzinfo=None)
        return placed if placed < cutoff else None

    def _scs_apply_order(self, order, bindings=None, defer=None):
        channel = self.channel_id
        order_id = str(order.get("external_id") or self.external_ref or "")
        if not order_id:
            raise ValueError("order event without an external order id")
        if order.get("status") not in ("cancelled", "refunded"):
            # a WooCommerce order's partial refunds are read from its API
            channel._scs_follow_refunds(order_id, order)
        lines = self._scs_order_lines(order, bindings)
        found = self.env["channel.binding"].union(*(b for _line, b in lines))
        # serialise with every other job touching these SKUs
        found._scs_lock()
        # a refund of lines adds to what came before instead of replacing
        # it (each releases its own lines, once): never stale
        line_refund = _is_line_refund(order)
        history = [] if line_refund else self._scs_order_history(order_id)
        applied = [(e, data) for e, data in history if e.state == "applied"]
        if self._scs_newer_applied(applied, order):
            if self._scs_only_deleted_since(applied, order):
                return self._scs_confirm_first(order_id)
            self._scs_set_state(
                "stale", reason=_("a newer event of this order was applied")
            )
            return "stale"
        Picking = self.env["stock.picking"].sudo()
        existing = Picking.search(
            [
                ("scs_channel_id", "=", channel.id),
                ("scs_external_order_id", "=", order_id),
                ("state", "!=", "cancel"),
            ]
        )
        if self.kind == "cancel" or order.get("status") in ("cancelled", "refunded"):
            return self._scs_apply_release(existing, order, order_id, lines)
        if existing:
            return self._scs_follow_order(existing, lines, applied, bindings)
        held_back = self._scs_held_back(order, order_id, applied, bindings)
        if held_back:
            state, reason, result = held_back
            self._scs_set_state(state, reason=reason)
            return result
        as_of = ""
        later = self._scs_later_state(history)
        if later:
            # the order is reserved as it is now, not as it was created
            lines = self._scs_order_lines(later[1], bindings)
            self.env["channel.binding"].union(*(b for _ln, b in lines))._scs_lock()
            as_of = later[0].idempotency_key
        known = [(line, b) for line, b in lines if b]
        self._scs_log_unbound(lines)
        if not known:
            self._scs_set_state("attention", reason=_("no line of the order is bound"))
            return "no known line"
        known, dropped = _below_precision(known)
        if not known:
            return self._scs_reserve_nothing(dropped)
        known, refunded = self._scs_less_refunded(applied, known, bindings)
        if refunded and not known:
            self._scs_set_state(
                "applied",
                ack_ts=time.time(),
                reason=_("nothing to reserve: refunded before (%s)", refunded),
            )
            return "nothing to reserve"
        if defer is not None and not refunded and not as_of and not dropped:
            # reserved together with the other orders of the run (one create,
            # one confirmation, one reservation for all of them)
            defer.append((self, order_id, known))
            return DEFERRED
        try:
            picking = self._scs_reserve(channel, order_id, known)
        except NoReserveSource as err:
            self._scs_set_state("attention", error=str(err))
            return "no stock location"
        result = self._scs_finish_order(
            picking, known, refunded, as_of, dropped=dropped
        )
        if later:
            # applied now, through the creation: an update older than it and
            # delivered after it is stale
            later[0]._scs_set_state(
                "applied",
                ack_ts=time.time(),
                reason=_(
                    "reserved with its order (%s)", ", ".join(picking.mapped("name"))
                ),
            )
        return result

    def _scs_note_channel_sale(self, known, back=False, held_since=None):
        """The channel took what it sold off its own level (or, ``back``,
        put back what it released): so noted on its bindings
        (``last_seen_qty``), so that the next push sends Odoo's number even
        when it did not change. A channel offered its cap (or its share)
        that sells it holds 0 while Odoo still publishes the cap: without
        this, the push would be skipped as already there, and the channel
        would sell nothing more until a reconciliation; one that restocks a
        cancelled order would hold more than its cap (put back is noted for
        a capped or allocated binding only). A level the channel
        reported after this event counts the change already. A figure noted
        wrong costs one push of Odoo's number, which is right either way.
        """
        for binding, qty in _per_binding(known):
            if binding.push_state != "ok" or not binding.last_seen_at:
                continue
            if self.event_ts and (binding.last_event_ts or 0.0) >= self.event_ts:
                continue
            if back and not (binding.use_max_qty or binding.allocation_pct < 100):
                # Odoo's number rises with the release and is pushed anyway;
                # a channel that did not restock (a cancel without restock)
                # would be thought to hold more than it does
                continue
            if back and (binding.last_event_ts or 0.0) >= (held_since or 0.0):
                # the channel reported its level since the order was placed:
                # that level (and the push that corrected it) may already
                # count what it put back
                continue
            delta = qty if back else -qty
            binding.write({"last_seen_qty": max(0, int(binding.last_seen_qty + delta))})

    def _scs_placed_ts(self, pickings):
        """When the order of ``pickings`` was placed, on the channel's clock
        (its first order event), else when its transfers were created."""
        order_id = pickings[:1].scs_external_order_id
        if order_id:
            self.flush_model(["channel_id", "direction", "kind", "external_ref"])
            self.env.cr.execute(
                SQL(
                    "SELECT MIN(NULLIF(event_ts, 0)) FROM sync_event"
                    " WHERE channel_id = %s AND direction = 'in'"
                    " AND kind = 'order' AND external_ref = %s",
                    self.channel_id.id,
                    order_id,
                )
            )
            placed = self.env.cr.fetchone()[0]
            if placed:
                return placed
        return _reserved_ts(pickings)

    def _scs_log_unbound(self, lines):
        """Each line no binding sells, logged as needing attention."""
        for line, binding in lines:
            if not binding:
                self._scs_unknown_sku(
                    line,
                    line.get("external_id"),
                    _("No binding for this SKU on the channel: line not reserved."),
                )

    def _scs_reserve_nothing(self, dropped):
        """An order whose bound lines ask for nothing Odoo can hold: every
        line at 0 is a state of the order (applied); lines of a fraction
        below Odoo's precision (``dropped``) are a mistake to look at."""
        if dropped:
            self._scs_set_state(
                "attention",
                error=_(
                    "%s: below the precision of Odoo's quantities, nothing to reserve",
                    ", ".join(dropped),
                ),
            )
            return "below precision"
        self._scs_set_state(
            "applied",
            ack_ts=time.time(),
            reason=_("nothing to reserve: every line asks for 0"),
        )
        return "nothing to reserve"

    def _scs_finish_order(
        self, picking, known, refunded="", as_of="", sold_bounds=None, dropped=()
    ):
        """After the reservation: oversell check, applied state."""
        self.sudo().write({"binding_id": known[0][1].id if len(known) == 1 else False})
        self._scs_check_oversell(picking, known, sold_bounds=sold_bounds)
        self._scs_note_channel_sale(known)
        reason = _("reserved in %s", ", ".join(picking.mapped("name")))
        if as_of:
            reason += _("; as of the order's later update %s", as_of)
        if refunded:
            reason += _("; less what was refunded before: %s", refunded)
        if dropped:
            reason += _(
                "; below the precision of Odoo's quantities, not reserved: %s",
                ", ".join(dropped),
            )
        self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return f"reserved {', '.join(picking.mapped('name'))}"

    def _scs_follow_order(self, pickings, lines, applied, bindings=None):
        """An order already reserved: its reservation follows its newest lines.

        WooCommerce and generic shops send the whole order again when it is
        edited (a line added or removed, a quantity changed), and a later
        event may name a SKU bound since the order was reserved. The open
        transfer is brought to what this event sells, less what restocking
        refunds took out (as for a first reservation): units added are
        reserved (and checked against what the channel was offered), units
        taken out are released, so that the other channels neither sell units
        that are gone nor miss units that are back. An event that names no
        line, or a line whose SKU has no binding, releases nothing: it cannot
        say what the order no longer holds.

        Once part of the order has shipped, what it shipped counts as held:
        units the channel took out (an item Amazon cancelled alone, an edit)
        are released from what is still open, units added are not reserved
        (the shipment was made on the order as it was), and units taken out
        that Odoo has shipped already need attention: no edit undoes a
        shipment.
        """
        names = ", ".join(pickings.mapped("name"))
        shipped = pickings.filtered(lambda p: p.state == "done")
        unchanged = _("order already reserved (%s)", pickings[0].name)
        if shipped:
            unchanged = _(
                "order already shipped (%s)", ", ".join(shipped.mapped("name"))
            )
        known = [(line, binding) for line, binding in lines if binding]
        if not lines or (shipped and self._scs_refunded_before(applied)):
            # shipped and refunded: a refund of lines may be of shipped units
            # (a return, which Odoo handles as one), so what the order still
            # owes cannot be told from its lines (see ``_scs_release``)
            if lines:
                unchanged += _("; refunded since: its lines are not followed")
            self._scs_set_state("applied", reason=unchanged)
            return "already reserved"
        wanted, _refunded = self._scs_less_refunded(applied, known, bindings)
        want = {
            binding.product_id: (binding, qty) for binding, qty in _per_binding(wanted)
        }
        moves = pickings.move_ids.filtered(lambda m: m.state != "cancel")
        held = {}
        for move in moves:
            # a shipped move holds what it shipped
            qty = move.quantity if move.state == "done" else move.product_uom_qty
            held[move.product_id] = held.get(move.product_id, 0.0) + qty
        Binding = self.env["channel.binding"].sudo()
        gone = Binding
        if len(known) == len(lines):
            # a product the order holds but no longer names, and that a
            # binding of this channel sells (one the channel did not put
            # there is left as it is)
            removed = [product.id for product in held if product not in want]
            if removed:
                # an archived binding too: the order holds what it put there
                gone = Binding.with_context(active_test=False).search(
                    [
                        ("channel_id", "=", self.channel_id.id),
                        ("product_id", "in", removed),
                    ]
                )
        gone._scs_lock()
        less, more = [], {}
        for product, (binding, qty) in want.items():
            delta = qty - held.get(product, 0.0)
            if product.uom_id.compare(delta, 0) > 0:
                more[binding] = delta
            elif product.uom_id.compare(delta, 0) < 0:
                less.append((binding, -delta))
        less += [(binding, held[binding.product_id]) for binding in gone]
        unbound = [
            str(line.get("sku") or line.get("external_id") or "?")
            for line, binding in lines
            if not binding
        ]
        if unbound:
            unchanged += _("; no binding for %s: nothing released", ", ".join(unbound))
        dropped = []
        if shipped and more:
            # nothing is reserved after a shipment (it was made on the order
            # as it was, and what Odoo chose not to ship stays so)
            dropped, note = self._scs_added_after_shipment(applied, want, bindings)
            unchanged += note
            more = {}
        if more and self._scs_cancelled_in_odoo(pickings[:1].scs_external_order_id):
            # part of the order was cancelled in Odoo (a split transfer):
            # an update of the order does not reserve it again
            unchanged += _("; part of it was cancelled in Odoo: not reserved again")
            more = {}
        if not more and not less and not dropped:
            self._scs_set_state("applied", reason=unchanged)
            return "already reserved"
        if more:
            # added before anything is taken out: an edit that replaces every
            # line would otherwise cancel the transfer the new lines go to
            self._scs_reserve_more(pickings, more)
        released, unheld = self._scs_take_out(pickings, less)
        self._scs_note_channel_sale([({"quantity": qty}, b) for b, qty in more.items()])
        self._scs_note_channel_sale(
            [({"quantity": q}, b) for b, q in less],
            back=True,
            held_since=self._scs_placed_ts(pickings),
        )
        if more:
            totals = [({"quantity": want[b.product_id][1]}, b) for b in more]
            self._scs_check_oversell(pickings, totals, more)
        unheld = unheld if shipped else []
        self._scs_note_followed(names, more, released, unbound, unheld, dropped)
        return "changed"

    @staticmethod
    def _scs_refunded_before(applied):
        """Whether a refund of lines of the order that may be a return was
        applied (one without restock moves no quantity; one of units never
        fulfilled returns nothing)."""
        return any(
            _is_line_refund(order)
            and order.get("restock") is not False
            and not order.get("unshipped")
            for _event, order in applied
        )

    def _scs_added_after_shipment(self, applied, want, bindings=None):
        """``(labels, note)``: the units the channel added to a shipped
        order since its last state, said for a person to decide (a new
        transfer, or the channel's refund); else a note that what Odoo did
        not ship is not reserved again."""
        added = self._scs_added_since(applied, want, bindings)
        if not added:
            return [], _("; not shipped in Odoo: not reserved again")
        return [_qty_label(binding, qty) for binding, qty in added], ""

    def _scs_added_since(self, applied, want, bindings=None):
        """``[(binding, qty)]``: what each line of ``want`` grew by since the
        order's last applied state (none known: nothing)."""
        previous = next(
            (
                order
                for event, order in reversed(applied)
                if event.kind == "order"
                and event.state == "applied"
                and not _is_line_refund(order)
            ),
            None,
        )
        if previous is None:
            return []
        before = {
            binding.product_id: qty
            for binding, qty in _per_binding(
                [
                    (line, binding)
                    for line, binding in self._scs_order_lines(previous, bindings)
                    if binding
                ]
            )
        }
        added = []
        for product, (binding, qty) in want.items():
            grew = qty - before.get(product, 0.0)
            if product.uom_id.compare(grew, 0) > 0:
                added.append((binding, grew))
        return added

    def _scs_note_followed(self, names, more, released, unbound, unheld, dropped):
        """The outcome of an order's change, said on its event; it needs
        attention when the change asks what no transfer can give (units taken
        out that shipped, units added after a shipment)."""
        added = [_qty_label(binding, qty) for binding, qty in more.items()]
        reason = _(
            "order changed (%(pickings)s): reserved %(added)s more,"
            " released %(released)s",
            pickings=names,
            added=", ".join(added) or _("nothing"),
            released=", ".join(released) or _("nothing"),
        )
        if unbound:
            reason += _("; no binding for %s: nothing released", ", ".join(unbound))
        if unheld:
            # taken out on the channel, shipped by Odoo: a person decides
            # (recall the parcel, or bill the customer)
            reason += _(
                "; taken out of the order on the channel after Odoo shipped them: %s",
                ", ".join(unheld),
            )
        if dropped:
            # sold on the channel, after the shipment: a person decides
            # (a new transfer, or the channel's refund)
            reason += _(
                "; added to the order after a shipment, not reserved: %s",
                ", ".join(dropped),
            )
        if unheld or dropped:
            self._scs_set_state("attention", ack_ts=time.time(), error=reason)
            return
        self._scs_set_state("applied", ack_ts=time.time(), reason=reason)

    @api.model
    def _scs_lock_stock(self, products, location):
        """Lock the quants a reservation of ``products`` may take from
        ``location`` (and its children), or retry the job.

        Channels are applied by jobs of their own, so two channels selling
        the same product reserve it at the same moment. Each job reads the
        stock on its own snapshot: without this lock both reserve what only
        one can have (Odoo then puts the second reservation on a new quant
        without quantity), and neither sees an oversell. With it, the second
        job finds the quants locked, or changed since its snapshot, and its
        events wait for a run a moment later, on the stock the first left.
        """
        if not products or not location:
            return
        self.env["stock.quant"].flush_model(["product_id", "location_id"])
        self.env["stock.location"].flush_model(["parent_path"])
        self.env.cr.execute(
            SQL(
                "SELECT q.id FROM stock_quant q"
                " JOIN stock_location l ON l.id = q.location_id"
                " WHERE q.product_id = ANY(%s) AND l.parent_path LIKE %s",
                sorted(products.ids),
                f"{location.parent_path}%",
            )
        )
        ids = [row[0] for row in self.env.cr.fetchall()]
        if ids:
            lock_rows_or_retry(
                self.env,
                "stock_quant",
                ids,
                "the stock of these products is being reserved by another job",
                nowait=True,
            )

    def _scs_lock_held_stock(self, pickings, products):
        """Lock the quants that the open transfers ``pickings`` may have
        reserved of ``products``, before giving any of it back, or retry.

        Releasing is a write to the same quants as reserving: Odoo takes the
        first quant it can lock without waiting, and when another channel's
        job holds it, books the release on a new quant of its own, which a
        later reservation or release clamps at zero. Each job's figures
        stay right, the quants' total does not: units no move holds stay
        reserved, and every channel is offered less than is there (seen
        under concurrent orders and cancellations of three channels).
        """
        for location in pickings.filtered(
            lambda p: p.state not in ("done", "cancel")
        ).location_id:
            self._scs_lock_stock(products, location)

    def _scs_reserve_more(self, pickings, more):
        """Add ``{binding: qty}`` to the order's open transfers, reserved.

        An order reserved across warehouses has a transfer in each: what an
        edit adds goes where it is free (a transfer whose source covers it,
        else each takes what its source has, the rest to the first), to the
        product's open move there, else in a new move (created together).
        """
        open_pickings = pickings.filtered(lambda p: p.state not in ("done", "cancel"))
        products = self.env["product.product"].union(*(b.product_id for b in more))
        channel = self.channel_id.sudo()
        free = {}
        for picking in open_pickings:
            self._scs_lock_stock(products, picking.location_id)
            free[picking] = channel._scs_free_quantities(
                products.ids, picking.location_id
            )
        adds = []
        for binding, qty in more.items():
            pid = binding.product_id.id
            # a transfer that covers it all first, then the most free
            ranked = sorted(
                open_pickings,
                key=lambda p, pid=pid, qty=qty: (
                    free[p].get(pid, 0.0) < qty - 1e-9,
                    -free[p].get(pid, 0.0),
                ),
            )
            rest = qty
            for picking in ranked:
                take = min(rest, max(0.0, free[picking].get(pid, 0.0)))
                if take > 1e-9:
                    adds.append((picking, binding, take))
                    free[picking][pid] = free[picking].get(pid, 0.0) - take
                    rest -= take
                if rest <= 1e-9:
                    break
            if rest > 1e-9:
                adds.append((ranked[0], binding, rest))
        moves = self.env["stock.move"]
        new_moves = []
        for picking, binding, qty in adds:
            product = binding.product_id
            move = picking.move_ids.filtered(
                lambda m, p=product: (
                    m.product_id == p and m.state not in ("done", "cancel")
                )
            )[:1]
            if move:
                move.write({"product_uom_qty": move.product_uom_qty + qty})
                moves |= move
                continue
            new_moves.append(
                {
                    "picking_id": picking.id,
                    "product_id": product.id,
                    "product_uom_qty": qty,
                    "product_uom": product.uom_id.id,
                    "location_id": picking.location_id.id,
                    "location_dest_id": picking.location_dest_id.id,
                    "company_id": picking.company_id.id,
                }
            )
        if new_moves:
            created = self.env["stock.move"].sudo().create(new_moves)
            created._action_confirm()
            moves |= created
        moves._action_assign()

    def _scs_reserve(self, channel, order_id, known):
        return self._scs_reserve_many(channel, [(order_id, known)])[0]

    @api.model
    def _scs_reserve_sources(self, channel):
        """Where the channel's orders are reserved from, in order of
        preference: the stock location of each of its warehouses, then its
        other locations. Never the delivery type's source: in two- and
        three-step delivery that is the output location, which holds nothing
        until a pick brings stock there."""
        channel = channel.sudo()
        locations = channel._scs_stock_locations()
        first = channel.warehouse_ids.lot_stock_id.filtered(
            lambda loc: loc in locations
        )
        sources = first | (locations - first)
        if not sources:
            warehouse = (
                self.env["stock.warehouse"]
                .sudo()
                .search([("company_id", "=", channel.company_id.id)], limit=1)
            )
            sources = warehouse.lot_stock_id
        if not sources:
            raise NoReserveSource(
                _(
                    "%(channel)s has no stock location to reserve orders from:"
                    " its company %(company)s has no warehouse, or the"
                    " channel's warehouses and locations are archived. Create"
                    " or choose one, then replay the event.",
                    channel=channel.name,
                    company=channel.company_id.name,
                )
            )
        return sources

    @staticmethod
    def _scs_pick_source(sources, free, wanted):
        """The first source whose free stock covers the whole order, else
        the one that covers most of it; its free stock is taken down by the
        order, for the next orders of the batch. A channel selling from
        several warehouses so reserves where the goods are, instead of
        calling a sale of stock it has an oversell."""
        best, best_cover = sources[:1], -1.0
        for source in sources:
            cover = sum(
                min(qty, max(0.0, free[source].get(binding.product_id.id, 0.0)))
                for binding, qty in wanted
            )
            if cover > best_cover + 1e-9:
                best, best_cover = source, cover
            if all(
                free[source].get(binding.product_id.id, 0.0) >= qty - 1e-9
                for binding, qty in wanted
            ):
                best = source
                break
        for binding, qty in wanted:
            product_id = binding.product_id.id
            free[best][product_id] = free[best].get(product_id, 0.0) - qty
        return best

    @classmethod
    def _scs_split_sources(cls, sources, free, wanted):
        """``[(source, [(binding, qty)])]``: where an order is reserved.

        One source when one covers the whole order (see
        ``_scs_pick_source``). Otherwise each line takes what each source
        has free, in the channel's order, and what no source has stays with
        the source that covers most: units of the order that one warehouse
        cannot cover are reserved where they are, so that no channel is
        offered them again, and only a real shortfall is an incident.
        """
        best = cls._scs_pick_source(sources, free, wanted)
        covered = all(
            free[best].get(b.product_id.id, 0.0) >= -1e-9 for b, _qty in wanted
        )
        if covered or len(sources) < 2:
            return [(best, wanted)]
        # undo the whole order's take from ``best``, then split it
        for binding, qty in wanted:
            pid = binding.product_id.id
            free[best][pid] = free[best].get(pid, 0.0) + qty
        parts = {}
        for binding, qty in wanted:
            pid = binding.product_id.id
            rest = qty
            for source in sources:
                take = min(rest, max(0.0, free[source].get(pid, 0.0)))
                if take > 1e-9:
                    parts.setdefault(source, []).append((binding, take))
                    free[source][pid] = free[source].get(pid, 0.0) - take
                    rest -= take
                if rest <= 1e-9:
                    break
            if rest > 1e-9:
                parts.setdefault(best, []).append((binding, rest))
                free[best][pid] = free[best].get(pid, 0.0) - rest
        return [(source, parts[source]) for source in sources if source in parts]

    @api.model
    def _scs_reserve_many(self, channel, orders):
        """One reserved outgoing transfer per ``(order_id, known lines)``.

        Created, confirmed and reserved together: Odoo's stock operations
        cost much less per transfer on a batch than one by one.
        """
        sources = self._scs_reserve_sources(channel)
        products = self.env["product.product"].union(
            *(binding.product_id for _o, known in orders for _l, binding in known)
        )
        for source in sources:
            self._scs_lock_stock(products, source)
        free = {
            source: channel._scs_free_quantities(products.ids, source)
            for source in sources
        }
        vals_list = []
        owners = []
        for index, (order_id, known) in enumerate(orders):
            for src, wanted in self._scs_split_sources(
                sources, free, _per_binding(known)
            ):
                vals_list.append(
                    self._scs_transfer_vals(channel, order_id, src, sources, wanted)
                )
                owners.append(index)
        created = (
            self.env["stock.picking"]
            .sudo()
            .with_company(channel.company_id)
            .create(vals_list)
        )
        created.action_confirm()
        created.action_assign()
        pickings = [self.env["stock.picking"].sudo() for _order in orders]
        for index, picking in zip(owners, created, strict=True):
            pickings[index] |= picking
        return pickings

    @api.model
    def _scs_transfer_vals(self, channel, order_id, src, sources, wanted):
        """An order's outgoing transfer from ``src``: ``wanted`` is
        ``[(binding, qty)]``."""
        picking_type = (
            src.warehouse_id.out_type_id or sources.warehouse_id[:1].out_type_id
        )
        dest = picking_type.default_location_dest_id or self.env.ref(
            "stock.stock_location_customers"
        )
        moves = [
            fields.Command.create(
                {
                    "product_id": binding.product_id.id,
                    "product_uom_qty": qty,
                    "product_uom": binding.product_id.uom_id.id,
                    "location_id": src.id,
                    "location_dest_id": dest.id,
                }
            )
            for binding, qty in wanted
        ]
        return {
            "picking_type_id": picking_type.id,
            "location_id": src.id,
            "location_dest_id": dest.id,
            "origin": f"{channel.name} {order_id}",
            "scs_channel_id": channel.id,
            "scs_external_order_id": order_id,
            "move_ids": moves,
        }

    def _scs_check_oversell(self, picking, known, added=None, sold_bounds=None):
        """An order beyond what the channel was offered is an incident.

        ``added``: ``{binding: qty}`` an edited order added to its lines,
        the part of them that the channel's last offer must cover (the rest
        was checked when it was reserved). ``sold_bounds``: ``{binding id:
        qty}`` from ``_scs_sold_bounds``, made after every transfer of the
        batch was created: an order that the offer still covers once that
        bound is taken from it needs no count of its own.
        """
        for binding, qty in _per_binding(known):
            move = picking.move_ids.filtered(
                lambda m, b=binding: (
                    m.product_id == b.product_id and m.state != "cancel"
                )
            )
            reserved = sum(move.mapped("quantity"))
            offered = binding.last_pushed_qty if binding.last_pushed_at else None
            short = reserved < qty - 1e-6
            asked = added[binding] if added else qty
            sold = 0.0
            since = False
            bound = (sold_bounds or {}).get(binding.id)
            if not short and bound is not None and asked <= offered - bound:
                # whatever earlier orders took, the offer covers this one
                continue
            if offered is not None:
                sold = self._scs_sold_since_push(binding, picking[:1], bool(added))
                if sold is None and not short:
                    # the offer the order was placed against is not known
                    continue
                if sold is None:
                    # short of stock, against an offer not known: the last
                    # one was pushed after the order was placed
                    offered, sold = None, 0.0
                    since = True
            if not short and (offered is None or asked <= offered - sold):
                continue
            figures = {
                "order": picking[:1].scs_external_order_id,
                "qty": f"{qty:g}",
                "sku": binding.sku,
                "reserved": f"{reserved:g}",
            }
            if offered is None and since:
                error = _(
                    "Order %(order)s asks %(qty)s of %(sku)s; %(reserved)s could"
                    " be reserved (the offer it was sold against is not known:"
                    " the channel was pushed again after the order was placed,"
                    " or an earlier order gave units back since).",
                    **figures,
                )
            elif offered is None:
                error = _(
                    "Order %(order)s asks %(qty)s of %(sku)s; %(reserved)s could"
                    " be reserved (no quantity was pushed to the channel yet).",
                    **figures,
                )
            else:
                error = _(
                    "Order %(order)s asks %(qty)s of %(sku)s; the channel was"
                    " offered %(offered)s and %(reserved)s could be reserved.",
                    offered=f"{offered:g}",
                    **figures,
                )
            if sold:
                error += " " + _(
                    "Earlier orders of the channel took %(sold)s of that offer"
                    " since it was pushed, leaving %(left)s.",
                    sold=f"{sold:g}",
                    left=f"{max(offered - sold, 0):g}",
                )
            if added:
                error += " " + _("An edit of the order added %s.", f"{asked:g}")
            self._scs_child(
                "oversell",
                f"oversell:{binding.sku}",
                "attention",
                binding_id=binding.id,
                product_id=binding.product_id.id,
                sku=binding.sku,
                quantity=qty,
                error=error,
            )
            # the incident's own figures (what was asked, offered and could
            # be reserved), not the whole line as if none of it was there
            self.channel_id._scs_notify(
                _("Oversell on %s", binding.sku),
                error + " " + _("Every channel is being pushed the new quantity."),
            )
            binding.product_id._scs_push_at_commit(force=True)

    @api.model
    def _scs_sold_bounds(self, bindings):
        """``{binding id: qty}``: at most what the channel sold of each
        binding since its last offer, in one query for all of them.

        Every live move of the channel's orders that had an order or cancel
        event since the oldest of the offers counts, whenever the order was
        placed: ``_scs_sold_since_push`` counts a subset of these moves (the
        orders placed after the offer and before the one checked), so an
        order that the offer still covers once this bound is taken from it
        is no incident, and a burst of orders well within the offer costs
        one query, not one or two per order and SKU (measured: about 9 ms an
        order in a run of 200). Only bindings with an offer are bounded.
        """
        offered = {
            binding.id: binding
            for binding in bindings
            if binding.last_pushed_at and binding.last_pushed_qty is not None
        }
        if not offered:
            return {}
        oldest = min(binding.last_pushed_at for binding in offered.values())
        channels = {binding.channel_id.id for binding in offered.values()}
        self.env["stock.move"].flush_model(
            ["product_id", "picking_id", "product_uom_qty", "state"]
        )
        self.env["stock.picking"].flush_model(
            ["scs_channel_id", "scs_external_order_id"]
        )
        self.flush_model(
            ["channel_id", "direction", "kind", "external_ref", "create_date"]
        )
        self.env.cr.execute(
            SQL(
                """
                WITH recent AS (
                    SELECT DISTINCT e.channel_id, e.external_ref
                      FROM sync_event e
                     WHERE e.channel_id = ANY(%(channels)s) AND e.direction = 'in'
                       AND e.create_date > %(oldest)s
                       AND e.kind IN ('order', 'cancel')
                       AND e.external_ref IS NOT NULL
                )
                SELECT p.scs_channel_id, m.product_id, SUM(m.product_uom_qty)
                  FROM recent r
                  JOIN stock_picking p
                    ON p.scs_channel_id = r.channel_id
                   AND p.scs_external_order_id = r.external_ref
                  JOIN stock_move m
                    ON m.picking_id = p.id AND m.state != 'cancel'
                   AND m.product_id = ANY(%(products)s)
                 GROUP BY p.scs_channel_id, m.product_id
                """,
                channels=sorted(channels),
                oldest=oldest,
                products=sorted({b.product_id.id for b in offered.values()}),
            )
        )
        sold = {
            (channel, product): qty for channel, product, qty in self.env.cr.fetchall()
        }
        return {
            binding_id: sold.get((binding.channel_id.id, binding.product_id.id), 0.0)
            for binding_id, binding in offered.items()
        }

    def _scs_sold_since_push(self, binding, picking, edit=False):
        """What the channel's earlier orders took from the offer this order
        was placed against: ``None`` when that offer is not known.

        The offer (the last quantity pushed) is what the channel could sell
        in all until the next push, not per order. An order is placed when
        the channel stamps it, at the latest when it reaches Odoo (its first
        delivery): orders placed after the offer and before this one share
        it. Their transfers may be created later (the apply job runs after
        the deliveries), so orders are placed by their first delivery, not
        by their transfer.

        ``None`` (the order is checked against nothing but the stock), when:

        - the offer was pushed after this order was placed: the offer the
          order saw was an earlier one;
        - an order placed before the offer gave units back since, through
          one of the channel's events (cancelled, refunded, edited down):
          the channel may have put them back on sale, and by how much is not
          known. (Shipping such an order gives nothing back, nor does the
          backorder a partial shipment leaves.)

        A missed incident is better than a false one: the stock figures are
        right either way, and every channel is pushed after each order.
        """
        # both are written when an offer is delivered: the exact time, and
        # the field the form shows (to the second)
        pushed = binding.last_pushed_at
        if binding.last_push_ts:
            exact = datetime.fromtimestamp(binding.last_push_ts, timezone.utc)
            pushed = max(pushed, exact.replace(tzinfo=None))
        pushed_ts = pushed.replace(tzinfo=timezone.utc).timestamp()
        self.env["stock.move"].flush_model(
            ["product_id", "picking_id", "product_uom_qty", "state"]
        )
        self.env["stock.picking"].flush_model(
            ["scs_channel_id", "scs_external_order_id"]
        )
        self.flush_model(
            [
                "channel_id",
                "direction",
                "kind",
                "external_ref",
                "event_ts",
                "change_ts",
                "create_date",
            ]
        )

        def placed(alias_channel, alias_order):
            # when an order was placed: its channel's stamp, at the latest
            # its first delivery
            return SQL(
                """(SELECT MIN(LEAST(e.change_ts,
                                     COALESCE(NULLIF(e.event_ts, 0), e.change_ts)))
                      FROM sync_event e
                     WHERE e.channel_id = %s AND e.direction = 'in'
                       AND e.kind = 'order' AND e.external_ref = %s)""",
                alias_channel,
                alias_order,
            )

        channel = binding.channel_id.id
        # this order: placed at the latest when this event came (for an
        # edit, the units it adds were sold then)
        mine = min(self.change_ts or time.time(), self.event_ts or time.time())
        if not edit:
            self.env.cr.execute(
                SQL("SELECT %s", placed(channel, picking.scs_external_order_id or ""))
            )
            mine = min(mine, self.env.cr.fetchone()[0] or mine)
        if mine <= pushed_ts:
            return None
        # only orders with a delivery since the offer can have taken from it
        # or given back to it: the channel's recent events (an index on
        # channel and date) bound the query, whatever the product's history
        self.env.cr.execute(
            SQL(
                """
                WITH recent AS (
                    SELECT DISTINCT e.external_ref
                      FROM sync_event e
                     WHERE e.channel_id = %(channel)s AND e.direction = 'in'
                       AND e.create_date > %(pushed)s
                       AND e.kind IN ('order', 'cancel')
                       AND e.external_ref IS NOT NULL
                )
                SELECT COALESCE(SUM(CASE
                           WHEN pl.placed > %(pushed_ts)s
                            AND (pl.placed < %(mine)s
                                 OR (pl.placed = %(mine)s AND p.id < %(picking)s))
                            AND m.state != 'cancel'
                           THEN m.product_uom_qty ELSE 0 END), 0),
                       BOOL_OR(pl.placed <= %(pushed_ts)s
                               AND m.write_date > %(pushed)s
                               AND (m.state = 'cancel'
                                    OR (m.state != 'done'
                                        AND p.backorder_id IS NULL)))
                  FROM recent r
                  JOIN stock_picking p
                    ON p.scs_channel_id = %(channel)s
                   AND p.scs_external_order_id = r.external_ref
                  JOIN stock_move m
                    ON m.picking_id = p.id AND m.product_id = %(product)s
                 CROSS JOIN LATERAL (SELECT %(placed)s AS placed) pl
                 WHERE p.id != %(picking)s
                   AND p.scs_external_order_id != %(order)s
                """,
                placed=placed(SQL("p.scs_channel_id"), SQL("p.scs_external_order_id")),
                mine=mine,
                pushed=pushed,
                pushed_ts=pushed_ts,
                channel=channel,
                product=binding.product_id.id,
                picking=picking.id,
                order=picking.scs_external_order_id or "",
            )
        )
        sold, given_back = self.env.cr.fetchone()
        return None if given_back else sold

    def _scs_apply_release(self, existing, order, order_id, lines):
        """A cancellation or a refund of the order ``existing`` holds."""
        if order.get("unconfirmed") and existing.filtered(
            lambda p: p.state not in ("done", "cancel")
        ):
            return self._scs_confirm_first(order_id)
        if order.get("restock") is False and order.get("status") == "refunded":
            # a cancelled order never left: whatever a shop says of
            # restocking, its units are still on the shelf here
            self._scs_set_state(
                "applied", reason=_("refund without restock: nothing released")
            )
            return "no restock"
        return self._scs_release(existing, order, [(ln, b) for ln, b in lines if b])

    def _scs_confirm_first(self, order_id):
        """A release the delivery cannot prove fresh: ask the shop first.

        WooCommerce's ``order.deleted`` is the order's id alone, signed, the
        same bytes at every deletion of the order; only its unsigned
        delivery id tells one from the next. Sent again under another id
        after the order was restored, it would release a live order. The
        event waits (``received``) for a job of its own that asks the shop
        (no network call in the apply run) and queues it again once the
        shop says the order is gone.
        """
        self._scs_set_state(
            "received",
            reason=_("asking the shop whether order %s is deleted", order_id),
        )
        self.with_delay(
            identity_key=f"stock_channel_sync.confirm.{self.id}",
            description=f"Ask {self.channel_id.name} whether order {order_id}"
            " is deleted",
        )._scs_job_confirm_deletion()
        return "confirming"

    def _scs_job_confirm_deletion(self):
        """Apply a deletion once the shop confirms the order is gone
        (trashed or deleted); one the shop still has releases nothing. For a
        state of the order older than a deletion only (see
        ``_scs_only_deleted_since``), the reverse: applied when the shop has
        the order open again, stale while it is in the trash."""
        event = self.sudo()
        event.ensure_one()
        if event.state != "received":
            return f"nothing to confirm: event is {event.state}"
        data = json.loads(event.data or "{}")
        order = data.get("order") or {}
        order_id = str(order.get("external_id") or event.external_ref or "")
        channel = event.channel_id
        try:
            deleted, status = channel._scs_adapter().order_deleted(order_id)
        except ChannelError as err:
            if err.retryable:
                raise retry_later(err) from err
            event._scs_confirm_failed(str(err))
            return f"not confirmed: {err}"
        if event.kind == "order":
            return event._scs_restore_confirmed(data, order_id, deleted, status)
        if not deleted:
            event._scs_set_state(
                "skipped",
                reason=_(
                    "the shop still has order %(order)s (%(status)s): a deletion"
                    " sent late or sent again releases nothing",
                    order=order_id,
                    status=status or "?",
                ),
            )
            return f"order {order_id} is {status}: nothing released"
        data["order"] = dict(order, unconfirmed=False, confirmed_deleted=True)
        event._scs_set_state(
            "queued",
            data=json.dumps(data),
            reason=_("the shop confirmed the deletion (%s)", status),
        )
        channel._scs_enqueue_inbound()
        return f"order {order_id} is {status}: released next"

    def _scs_restore_confirmed(self, data, order_id, deleted, status):
        """The shop's answer for a state of the order older than its
        deletion only: in the trash (or gone), the state is stale; open
        again, it is applied over the deletion."""
        if deleted:
            self._scs_set_state(
                "stale",
                reason=_(
                    "a newer event of this order was applied (the shop has order"
                    " %(order)s %(status)s)",
                    order=order_id,
                    status=status,
                ),
            )
            return f"order {order_id} is {status}: stale"
        data["order"] = dict(data.get("order") or {}, restored=True)
        self._scs_set_state(
            "queued",
            data=json.dumps(data),
            reason=_(
                "the shop has order %(order)s again (%(status)s)",
                order=order_id,
                status=status,
            ),
        )
        self.channel_id._scs_enqueue_inbound()
        return f"order {order_id} is {status}: applied next"

    def _scs_confirm_failed(self, error):
        """The shop could not be asked: the order stays reserved (the safe
        side) and the event is a dead letter, with its alert; Retry asks
        again."""
        for event in self.sudo().filtered(lambda e: e.state == "received"):
            event._scs_set_state(
                "dead",
                error=_(
                    "could not ask the shop whether the order is deleted: %s; it"
                    " stays reserved (Retry asks again)",
                    error,
                ),
                attempts=event.attempts + 1,
            )
            event.channel_id._scs_notify_dead_letter(event)

    def _scs_on_confirm_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook of ``_scs_job_confirm_deletion``."""
        self._scs_confirm_failed(exc_message or exc_name or _("failed"))

    def _scs_release(self, pickings, order, known=()):
        """Release what a cancelled or refunded order holds.

        A cancellation releases the whole order. A refund that names its
        lines (Shopify's restocked refund lines, a generic refund's lines)
        releases only their quantities: the rest of the order is still sold,
        and releasing it would offer those units again on every channel.
        """
        if _is_line_refund(order) and self._scs_refund_released():
            # skipped, not applied: the refund's lines count once where an
            # order is reserved after its refunds (_scs_less_refunded)
            reason = _("this refund was already applied: nothing released again")
            self._scs_set_state("skipped", reason=reason)
            return reason
        open_pickings = pickings.filtered(lambda p: p.state not in ("done", "cancel"))
        shipped = any(p.state == "done" for p in pickings)
        if (
            open_pickings
            and _is_line_refund(order)
            and shipped
            and not order.get("unshipped")
        ):
            # part of the order left: a refund of lines may be of units that
            # shipped (a return), and the rest is still to ship
            reason = _(
                "order partly shipped (%s): a refund of lines may be of shipped"
                " units, nothing released from what is still to ship (cancel"
                " that transfer in Odoo if it will not ship)",
                ", ".join(
                    pickings.filtered(lambda p: p.state == "done").mapped("name")
                ),
            )
        elif open_pickings and _is_line_refund(order):
            reason = self._scs_release_lines(open_pickings, known)
            self._scs_note_channel_sale(
                known, back=True, held_since=self._scs_placed_ts(open_pickings)
            )
        elif open_pickings:
            self._scs_lock_held_stock(open_pickings, open_pickings.move_ids.product_id)
            moves = open_pickings.move_ids.filtered(lambda m: m.state != "cancel")
            by_product = {
                b.product_id: b
                for b in self.env["channel.binding"]
                .sudo()
                .search(
                    [
                        ("channel_id", "=", self.channel_id.id),
                        ("product_id", "in", moves.product_id.ids),
                    ]
                )
            }
            held = [
                ({"quantity": m.product_uom_qty}, by_product[m.product_id])
                for m in moves
                if m.product_id in by_product
            ]
            open_pickings.with_context(scs_release=True).action_cancel()
            self._scs_note_channel_sale(
                held, back=True, held_since=self._scs_placed_ts(open_pickings)
            )
            reason = _(
                "reservation released (%s)", ", ".join(open_pickings.mapped("name"))
            )
        elif pickings:
            reason = _("order already shipped: nothing reserved to release")
        elif _is_line_refund(order):
            reason = _(
                "no reservation for this order yet: these lines are left out"
                " when it is reserved"
            )
        else:
            reason = _("no reservation for this order")
        self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return reason

    def _scs_release_lines(self, pickings, known):
        """Take the refunded quantities out of the order's open moves."""
        released, unheld = self._scs_take_out(pickings, _per_binding(known))
        reason = _(
            "refund: released %(lines)s (%(pickings)s)",
            lines=", ".join(released) or _("nothing"),
            pickings=", ".join(pickings.mapped("name")),
        )
        if unheld:
            reason += _("; not held by this order: %s", ", ".join(unheld))
        return reason

    def _scs_take_out(self, pickings, quantities):
        """Take ``[(binding, qty)]`` out of the open moves of ``pickings``:
        ``(released, unheld)``, each a list of labels."""
        released, unheld = [], []
        to_assign = to_cancel = self.env["stock.move"]
        self._scs_lock_held_stock(
            pickings,
            self.env["product.product"].union(*(b.product_id for b, _q in quantities)),
        )
        for binding, qty in quantities:
            moves = pickings.move_ids.filtered(
                lambda m, p=binding.product_id: (
                    m.product_id == p and m.state not in ("done", "cancel")
                )
            )
            left = qty
            for move in moves:
                if move.product_uom.compare(left, 0) <= 0:
                    break
                take = min(left, move.product_uom_qty)
                left -= take
                if move.product_uom.compare(move.product_uom_qty, take) <= 0:
                    to_cancel |= move
                else:
                    # below its reservation, Odoo unreserves the move: reserved
                    # again below, for what is still sold
                    move.write({"product_uom_qty": move.product_uom_qty - take})
                    to_assign |= move
                released.append(_qty_label(binding, take))
            if binding.product_id.uom_id.compare(left, 0) > 0:
                # more taken out than the order still holds: said, not hidden
                unheld.append(_qty_label(binding, left))
        to_cancel._action_cancel()
        to_assign._action_assign()
        return released, unheld
