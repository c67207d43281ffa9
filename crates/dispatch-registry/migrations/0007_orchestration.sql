-- Schema version 7: orchestration. Deliveries (receipts), the lane-event outbox, the inbox,
-- subscriptions and triggers. Everything that must survive a `kill -9` is a row here, written
-- before the side effect it describes.

-- Every message dispatch delivers to a lane: a `send` in any mode, a queued message, a
-- subscription's or a trigger's turn. The id is the receipt, and the `clientUserMessageId`
-- of the turn it starts, so the thread itself is the evidence that it arrived.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    lane_ref        TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    mode            TEXT NOT NULL
                    CHECK (mode IN ('send', 'steer', 'queue', 'interject', 'context')),
    text            TEXT NOT NULL,
    -- Who asked: `send`, `subscription:<id>`, `trigger:<id>`.
    source          TEXT NOT NULL,
    -- The lane that sent it, for an attributed message (`--intro`).
    sender_ref      TEXT,
    -- An idempotency key binds one payload: the same key and payload return this receipt.
    idempotency_key TEXT UNIQUE,
    payload_hash    TEXT,
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'submitting', 'accepted', 'completed',
                                     'failed', 'ambiguous')),
    turn_id         TEXT,
    error           TEXT,
    -- How many times an ambiguous delivery was looked for in its thread.
    checks          INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

-- A lane's queue and what holds it: in creation order.
CREATE INDEX deliveries_open ON deliveries (lane_ref, created_at_ms, id)
    WHERE state IN ('queued', 'submitting', 'ambiguous');
-- Ending a receipt when its turn ends.
CREATE INDEX deliveries_by_turn ON deliveries (lane_ref, turn_id) WHERE turn_id IS NOT NULL;

-- Transitions of a lane that orchestration acts on (subscriptions, `--on` triggers, the
-- queue), written in the same transaction as the facts that cause them, and deleted in the
-- same transaction as the effects of handling them: each is handled exactly once.
CREATE TABLE lane_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    lane_ref TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('turn_started', 'turn_ended', 'approval')),
    turn_id  TEXT,
    -- For `turn_ended`: `completed`, `interrupted` or `failed`.
    status   TEXT,
    at_ms    INTEGER NOT NULL
);

-- Messages for lanes (or for the operator, `lane_ref` NULL) that are not turns.
CREATE TABLE inbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    lane_ref      TEXT REFERENCES lanes (ref) ON DELETE CASCADE,
    kind          TEXT NOT NULL
                  CHECK (kind IN ('subscription_update', 'direct_message', 'trigger_result',
                                  'approval_request')),
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    -- The lane the message is about (a subscription's target, a trigger's lane, a sender).
    about_ref     TEXT,
    turn_id       TEXT,
    data          TEXT CHECK (data IS NULL OR json_valid(data)),
    -- What produced it, unique: producing it twice (after a crash) inserts it once.
    origin        TEXT UNIQUE,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'acked')),
    created_at_ms INTEGER NOT NULL,
    acked_at_ms   INTEGER
);

CREATE INDEX inbox_by_lane ON inbox (lane_ref, state, id);

CREATE TABLE subscriptions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    target_ref       TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    subscriber_ref   TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    event            TEXT NOT NULL
                     CHECK (event IN ('done', 'completed', 'failed', 'idle', 'approval',
                                      'activity')),
    delivery         TEXT NOT NULL CHECK (delivery IN ('turn', 'inbox')),
    tail             INTEGER NOT NULL CHECK (tail >= 0),
    once             INTEGER NOT NULL CHECK (once IN (0, 1)),
    active           INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    fired            INTEGER NOT NULL DEFAULT 0,
    last_fired_at_ms INTEGER,
    created_at_ms    INTEGER NOT NULL
);

CREATE INDEX subscriptions_by_target ON subscriptions (target_ref) WHERE active = 1;

-- Triggers: a message delivered to a lane on a schedule (`every`, `cron`), when the lane has
-- been idle for a while (`idle_for`), or when something happens to it (`on`).
CREATE TABLE triggers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    lane_ref         TEXT NOT NULL REFERENCES lanes (ref) ON DELETE CASCADE,
    -- `every` (spec: milliseconds), `cron` (spec: the expression), `idle_for` (spec:
    -- milliseconds), `on` (spec: `turn_completed` or `approval`).
    kind             TEXT NOT NULL CHECK (kind IN ('every', 'cron', 'idle_for', 'on')),
    spec             TEXT NOT NULL,
    -- The IANA time zone of a cron trigger; NULL: the daemon's local time zone.
    tz               TEXT,
    text             TEXT NOT NULL,
    mode             TEXT NOT NULL CHECK (mode IN ('send', 'queue')),
    paused           INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- The next due time; NULL while paused, for `on` triggers, and for an `idle_for` trigger
    -- whose lane is busy. A fire is claimed by moving it on (compare and set) in the
    -- transaction that writes its `trigger_fires` row.
    next_fire_at_ms  INTEGER,
    last_fired_at_ms INTEGER,
    -- What the last fire did, in words; whether it went well; the receipt it made.
    last_outcome     TEXT,
    last_ok          INTEGER CHECK (last_ok IS NULL OR last_ok IN (0, 1)),
    last_receipt     TEXT,
    fires            INTEGER NOT NULL DEFAULT 0,
    created_at_ms    INTEGER NOT NULL
);

CREATE INDEX triggers_by_lane ON triggers (lane_ref);

-- Fires claimed and not yet finished: written in the transaction that claims them (a due
-- time moved on, a lane event handled) and removed in the one that records their outcome.
-- A fire found here after a crash is finished at start: its delivery's idempotency key
-- (`trigger:<id>:<due_key>`) tells whether the message was already handed over, so a fire
-- is neither lost nor delivered twice.
CREATE TABLE trigger_fires (
    trigger_id    INTEGER NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    -- What it is for: `at:<ms>` (a due time) or `event:<id>` (a lane event).
    due_key       TEXT NOT NULL,
    due_at_ms     INTEGER NOT NULL,
    -- How many due times this one fire stands for (missed ones are coalesced).
    coalesced     INTEGER NOT NULL DEFAULT 1 CHECK (coalesced >= 1),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (trigger_id, due_key)
);

-- `new` with an idempotency key: the key binds the settings (their hash) to the lane the
-- first call made, so a retry (also after a crash) makes nothing new.
CREATE TABLE creations (
    idempotency_key TEXT PRIMARY KEY,
    payload_hash    TEXT NOT NULL,
    -- Null until the lane is recorded: a crash before that leaves the creation unknown.
    lane_ref        TEXT REFERENCES lanes (ref) ON DELETE SET NULL,
    thread_id       TEXT,
    receipt         TEXT,
    created_at_ms   INTEGER NOT NULL
);
