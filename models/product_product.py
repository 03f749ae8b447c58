# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Per-SKU push jobs.

A stock change of a variant enqueues one queue_job job for that variant
(``identity_key`` per SKU): a burst of changes on one SKU while its job is
pending coalesces into that one job, and the job publishes to every channel
of the SKU at once. Channels, not jobs, are the unit of fan-out: 30 channels
cost one job, not 30.
"""

import time
from datetime import datetime, timezone

from odoo import fields, models
from odoo.tools import SQL

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.utils import must_run_without_delay

from .channel_binding import LOCK_RETRY_SECONDS

#: seconds a SKU job waits for its channels (``stock_channel_sync.push_wait_seconds``)
DEFAULT_PUSH_WAIT = 3.0
from .job_store import (
    LOST_CONNECTION_ERRORS,
    lock_rows_or_retry,
    run_again_after_lost_connection,
    store_jobs,
)

#: pre-commit sets of the variants to push (see ``_scs_push_at_commit``)
PENDING_CHANGED = "stock_channel_sync.changed_products"
PENDING_FORCED = "stock_channel_sync.forced_products"
#: default minimum seconds between two pushes of one SKU (burst coalescing)
DEFAULT_MIN_INTERVAL = 1.0


class ProductProduct(models.Model):
    _inherit = "product.product"

    # for Channel Sync users only: a read of every field (what external API
    # clients do) by an inventory or sales user must not need the bindings
    channel_binding_ids = fields.One2many(
        "channel.binding",
        "product_id",
        string="Channel Bindings",
        groups="stock_channel_sync.group_sync_user",
    )

    def write(self, vals):
        """An archived variant is not for sale: its channels are offered
        none of it, and its stock again once it is restored."""
        res = super().write(vals)
        if "active" in vals:
            self._scs_push_at_commit()
        return res

    def unlink(self):
        """A deleted variant's bindings go through their own ``unlink`` (the
        database's cascade would skip it): their pushes still waiting are
        closed, not left failing with no binding to send them."""
        self.env["channel.binding"].sudo().with_context(active_test=False).search(
            [("product_id", "in", self.ids)]
        ).unlink()
        return super().unlink()

    def _scs_bound(self):
        """``{variant id: last push (unix)}`` for variants bound to a pushing channel.

        One query per transaction: it drops unbound variants (so stock moves
        of products sold nowhere cost nothing more) and returns what the
        burst throttle needs.
        """
        if not self:
            return {}
        self.env["channel.binding"].flush_model(
            ["product_id", "active", "channel_id", "last_push_ts"]
        )
        self.env["sync.channel"].flush_model(["active", "sync_enabled"])
        self.env.cr.execute(
            SQL(
                """
                SELECT b.product_id, MAX(COALESCE(b.last_push_ts, 0))
                  FROM channel_binding b
                  JOIN sync_channel c ON c.id = b.channel_id
                 WHERE b.product_id = ANY(%s)
                   AND b.active AND c.active AND c.sync_enabled
              GROUP BY b.product_id
                """,
                list(self.ids),
            )
        )
        return dict(self.env.cr.fetchall())

    def _scs_push_at_commit(self, force=False):
        """Enqueue the push of these SKUs at pre-commit, once per transaction.

        Every caller inside a transaction goes through here (stock changes,
        binding edits, "Push Now", oversells): the jobs are then created
        after the transaction's last change (or at a flushing savepoint,
        where Odoo runs the pre-commit hooks too: a change left to a waiting
        job is checked again after the commit, see ``job_store``).
        """
        product_ids = {pid for pid in self.ids if pid}
        if not product_ids:
            return
        cr = self.env.cr
        key = PENDING_FORCED if force else PENDING_CHANGED
        pending = cr.precommit.data.get(key)
        if pending is None:
            pending = cr.precommit.data[key] = set()
            env = self.env

            def _flush():
                ids = cr.precommit.data.pop(key, None)
                if ids:
                    # stamped at pre-commit: latency is measured from (about)
                    # the commit, not from the first line of a long transaction
                    env["product.product"].browse(ids)._scs_enqueue_push(
                        force=force, changed_ts=time.time()
                    )

            cr.precommit.add(_flush)
        pending.update(product_ids)

    def _scs_enqueue_push(self, force=False, changed_ts=None, delay=None):
        """One job per bound SKU; coalesced with a pending job of the same SKU.

        Burst throttle: a SKU pushed less than ``min_push_interval`` seconds
        ago gets a job that waits until the interval has passed. Every change
        made meanwhile coalesces into that one pending job (same identity
        key), so a flash sale of 1,000 changes a second costs each channel a
        couple of pushes, the last one carrying the final number. A SKU that
        was quiet is pushed at once. ``delay``: seconds the job waits at
        least (a job run again after a lost database connection).
        """
        now = time.time()
        changed_ts = changed_ts or now
        suffix = ".force" if force else ""
        bound = self._scs_bound()
        interval = float(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("stock_channel_sync.min_push_interval", DEFAULT_MIN_INTERVAL)
        )
        products = self.browse(sorted(bound)).sudo()
        specs = []
        for product in products:
            eta = None
            next_allowed = (bound[product.id] or 0.0) + interval
            if not force and next_allowed > now:
                eta = _eta_after(next_allowed)
            if delay:
                eta = _eta_after(max(now + delay, 0.0 if force else next_allowed))
            specs.append((product, eta, f"stock_channel_sync.sku.{product.id}{suffix}"))
        if not self.env.registry.ready:
            # a change made while modules load (an install's demo stock, an
            # update's data): the server serves no jobs before it is done, so
            # the push's latency counts from its job, not from the change
            changed_ts = None
        kwargs = {"changed_ts": changed_ts, "force": force}
        if must_run_without_delay(self.env):
            for product, _eta, _key in specs:
                product._scs_job_push_sku(**kwargs)
            return products
        self._scs_store_jobs(specs, kwargs, 0.0 if force else interval)
        return products

    def _scs_job_push_sku(self, changed_ts=None, force=False):
        """Publish this SKU's current quantity to all of its channels.

        The burst interval is enforced here too, under the SKU's lock: two
        transactions committing at the same instant can both create a job
        (queue_job's identity check is search-then-insert), so the job that
        finds the SKU pushed less than an interval ago waits for the rest of
        it instead of pushing again. Pushes of one SKU are therefore at least
        one interval apart, whatever the concurrency.
        """
        bindings = self.env["channel.binding"].search(
            [
                ("product_id", "in", self.ids),
                ("channel_id.active", "=", True),
                ("channel_id.sync_enabled", "=", True),
            ],
            order="id",
        )
        if bindings:
            # a binding another job holds (its retry trying a channel that
            # is slow to answer, a batch) is not waited for: the others are
            # pushed now, and it gets a push of its own once free
            locked = lock_rows_or_retry(
                self.env,
                "channel_binding",
                bindings.ids,
                "SKU busy",
                skip_locked=True,
                seconds=LOCK_RETRY_SECONDS,
            )
            if not locked:
                # every binding held: another job pushes this SKU; the next
                # run, a moment later, finds its numbers
                raise RetryableJobError(
                    "SKU busy", seconds=LOCK_RETRY_SECONDS, ignore_retry=True
                )
            busy = bindings - bindings.browse(locked)
            bindings = bindings.browse(locked).with_context(
                scs_locked_binding_ids=frozenset(locked)
            )
            for binding in busy:
                binding._scs_enqueue_retry(LOCK_RETRY_SECONDS)
        if not force and bindings:
            interval = float(
                self.env["ir.config_parameter"]
                .sudo()
                .get_param("stock_channel_sync.min_push_interval", DEFAULT_MIN_INTERVAL)
            )
            wait = max(bindings.mapped("last_push_ts")) + interval - time.time()
            if wait > 0:
                # the rest of the interval, to the microsecond (the runner
                # reads etas so)
                raise RetryableJobError(
                    f"pushed less than {interval:g} s ago",
                    seconds=wait,
                    ignore_retry=True,
                )
        wait = float(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("stock_channel_sync.push_wait_seconds", DEFAULT_PUSH_WAIT)
        )
        summary = bindings._scs_push(changed_ts=changed_ts, force=force, wait=wait)
        return "pushed {pushed}, unchanged {skipped}, failed {failed}".format(**summary)

    def _scs_on_push_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook of the SKU job: never a silent failure.

        Channel errors are handled inside the job (retry jobs, dead letters);
        this catches the unexpected ones (a bug, a database error after the
        retries): each binding of the SKU gets a dead-letter event carrying
        the error, and its channel's responsible user an activity. Retrying
        the event pushes today's number. A job that only lost its database
        connection pushed nothing wrong: the SKU gets a new job instead.
        """
        Binding = self.env["channel.binding"].sudo()
        stamp = time.time()
        again = self.browse()
        for product in self:
            key, delay = product._scs_push_job_to_run_again(exc_name)
            if delay:
                product._scs_enqueue_push(force=key.endswith(".force"), delay=delay)
                again |= product
        dead_key = (
            self.env["queue.job"]
            .sudo()
            .search([("uuid", "=", self.env.context.get("job_uuid") or "")], limit=1)
            .identity_key
            or ""
        )
        for product in self - again:
            if kw.get("found_dead") and not dead_key.endswith(".force"):
                # its channels may still offer the number before the change:
                # pushed again, forced, once (a forced push found dead in
                # turn makes the dead letters, for a person's Retry)
                product._scs_enqueue_push(force=True)
                continue
            bindings = Binding.search([("product_id", "=", product.id)])
            if kw.get("found_dead") and kw.get("job_created"):
                # handled up to a minute late: a binding pushed fine since
                # the job was created holds a newer number than it had to send
                bindings = bindings.filtered(
                    lambda b: (
                        not (
                            b.push_state == "ok"
                            and (b.last_push_ts or 0.0) > kw["job_created"]
                        )
                    )
                )
            events = (
                self.env["sync.event"]
                .sudo()
                .create(
                    [
                        {
                            "direction": "out",
                            "channel_id": binding.channel_id.id,
                            "binding_id": binding.id,
                            "product_id": product.id,
                            "sku": binding.sku,
                            "kind": "push",
                            "idempotency_key": (
                                f"sku-job-failed-{binding.id}-{stamp:.3f}"
                            ),
                            "state": "dead",
                            "error": exc_message or exc_name or "push job failed",
                            "change_ts": stamp,
                            "enqueue_ts": stamp,
                        }
                        for binding in bindings
                    ]
                )
            )
            for event in events:
                event.channel_id._scs_notify_dead_letter(event)

    def _scs_push_job_to_run_again(self, exc_name):
        """``(key, seconds)`` of this SKU's failed job, when it only lost its
        database connection (see ``run_again_after_lost_connection``); a
        forced push is run again forced (its key says so)."""
        self.ensure_one()
        key = f"stock_channel_sync.sku.{self.id}"
        if exc_name not in LOST_CONNECTION_ERRORS:
            return key, 0
        keys = [key, f"{key}.force"]
        self.env["queue.job"].flush_model(["identity_key", "state"])
        # the failed job itself (queue_job keeps its uuid in the hook's
        # context); else the newest failed job of the SKU
        self.env.cr.execute(
            SQL(
                "SELECT identity_key FROM queue_job WHERE identity_key = ANY(%s)"
                " AND state = 'failed'"
                " ORDER BY uuid = %s DESC, date_created DESC, id DESC LIMIT 1",
                keys,
                self.env.context.get("job_uuid") or "",
            )
        )
        row = self.env.cr.fetchone()
        key = row[0] if row else keys[0]
        return key, run_again_after_lost_connection(self.env, key, exc_name)

    def _scs_store_jobs(self, specs, kwargs, interval=DEFAULT_MIN_INTERVAL):
        """Create the SKU jobs of a transaction: one lock query and one insert.

        Equivalent to calling ``with_delay(identity_key=...)`` per SKU, but a
        50-line delivery costs its user a couple of statements instead of a
        hundred (measured: 13 ms instead of 80 ms for 50 SKUs), and a change
        is never left to a job that already took its snapshot (see
        ``job_store``). A SKU whose job is running right now gets a job that
        waits for the burst interval, so a flash sale cannot chain immediate
        pushes.
        """
        return store_jobs(
            self.env,
            [
                (
                    product._scs_job_push_sku,
                    kwargs,
                    key,
                    f"Push stock of {product.default_code or product.id}",
                    eta,
                )
                for product, eta, key in specs
            ],
            running_eta=_eta_after(time.time() + interval) if interval else None,
        )


def _eta_after(timestamp):
    """``timestamp`` as queue_job's ``eta``: a naive UTC datetime.

    Kept to the microsecond: the jobs are inserted with their ``eta`` as is
    (``job_store.insert_jobs``) and the job runner compares
    ``EXTRACT(EPOCH FROM eta)`` with ``time.time()``, so a SKU pushed 0.2 s
    ago waits 0.8 s, not until the next whole second.
    """
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).replace(tzinfo=None)
