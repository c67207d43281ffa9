//! The dispatch registry: a SQLite file, accessed through sqlx, that records dispatch's lanes,
//! what their App Server notifications said (events, turns, items, errors, pending requests),
//! and an append-only log of the actions dispatch took.
//!
//! The schema is defined by the migrations embedded from `migrations/`; the schema version of a
//! registry is the highest migration recorded as applied in sqlx's `_sqlx_migrations` table (and
//! mirrored into `PRAGMA user_version` for humans). This binary only ever works with registries
//! at exactly [`LATEST_SCHEMA_VERSION`]:
//!
//! - [`Registry::open`] creates a missing registry, but refuses older and newer ones;
//! - [`migrate`] upgrades an older registry after writing a backup next to it;
//! - [`inspect`] looks at a registry without creating or changing anything (for `dispatch doctor`).

mod actions;
mod approvals;
mod bulk;
mod catalog;
mod contract_error;
mod creations;
mod deliveries;
mod error;
mod events;
mod history;
mod inbox;
mod ingest;
mod inspect;
mod items_fold;
mod kept_pages;
mod lane_events;
mod lanes;
mod migrate;
mod open;
mod pages;
mod probe;
mod refs;
mod search;
mod selectors;
mod subscriptions;
mod thread_ops;
mod triggers;

pub use actions::{Action, NewAction, Outcome};
pub use approvals::{NewRequest, RequestRow, RequestStatus, approval_origin};
pub use catalog::CachedCatalog;
pub use creations::CreationRow;
pub use deliveries::{DeliveryMode, DeliveryRow, DeliveryState, ImageRef, NewDelivery, Recording};
pub use error::RegistryError;
pub use events::{ErrorRow, EventRow, Fact, Facts, ItemRow, NewEvent, Recorded};
pub use history::{FileHistory, LaneHistory, TOOL_KINDS, ToolHistory, TurnHistory};
pub use inbox::{InboxFilter, InboxRow};
pub use inspect::{Inspection, inspect};
pub use kept_pages::{Kept, LaneStamp};
pub use lane_events::{Effects, LaneEvent, LaneEventKind, NewInboxMessage};
pub use lanes::{
    GoalRow, LaneActivity, LaneCounts, LaneFilter, LaneRow, LaneStatus, NewLane, Ownership,
    RetryRow, TurnRow, TurnStatus, WorktreeRow,
};
pub use migrate::{MigrationReport, MigrationStatus, migrate};
pub use open::Registry;
pub use pages::{LanePage, PageAfter, PageFilter, TREE_DEPTH, TREE_LIMIT, TopologyRow};
pub use refs::receipt_id;
pub use search::{SearchFilter, SearchRow, fts_query};
pub use selectors::{Candidate, Resolution};
pub use subscriptions::{NewSubscription, SubscriptionRow};
pub use thread_ops::Lineage;
pub use triggers::{
    ClaimIf, FireClaim, FireOutcome, NewTrigger, TriggerFire, TriggerKind, TriggerRow,
};

/// Schema version this binary knows: the highest embedded migration version.
pub const LATEST_SCHEMA_VERSION: i64 = 13;

/// The embedded migrations, `migrations/NNNN_name.sql`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_schema_version_matches_the_embedded_migrations() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|migration| migration.version).collect();
        let expected: Vec<i64> = (1..=LATEST_SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
        assert!(MIGRATOR.iter().all(|migration| !migration.no_tx));
    }
}
