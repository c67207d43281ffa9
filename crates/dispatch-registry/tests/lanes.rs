//! Creating, reading, listing and counting lanes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{new_lane, new_lane_ref, open_registry, raw};
use dispatch_registry::{
    Fact, Kept, LaneCounts, LaneFilter, LaneRow, LaneStamp, LaneStatus, NewLane, Ownership,
    Recorded, RegistryError,
};
use sqlx::Connection;

/// Records one notification carrying only `facts`.
fn facts(lane_ref: &str, facts: Vec<Fact>) -> Recorded {
    Recorded {
        lane_ref: lane_ref.into(),
        event: None,
        facts: facts.into(),
    }
}

fn refs(lanes: &[LaneRow]) -> Vec<&str> {
    lanes.iter().map(|lane| lane.lane_ref.as_str()).collect()
}

#[tokio::test]
async fn create_lane_assigns_a_random_base62_ref_and_stores_everything() {
    let (_dir, registry) = open_registry().await;
    let lane = registry
        .create_lane(&NewLane {
            thread_id: "019a-thread".into(),
            title: Some("Fix the build".into()),
            handle: Some("@builder".into()),
            ownership: Ownership::Attached,
            cwd: Some("/src/app".into()),
            model: Some("gpt-5".into()),
        })
        .await
        .unwrap();

    assert_eq!(lane.lane_ref.len(), 6);
    assert!(
        lane.lane_ref.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{}",
        lane.lane_ref
    );
    assert_eq!(lane.thread_id, "019a-thread");
    assert_eq!(lane.title.as_deref(), Some("Fix the build"));
    assert_eq!(
        lane.handle.as_deref(),
        Some("builder"),
        "stored without '@'"
    );
    assert_eq!(lane.ownership, Ownership::Attached);
    assert_eq!(lane.cwd.as_deref(), Some("/src/app"));
    assert_eq!(lane.model.as_deref(), Some("gpt-5"));
    assert_eq!(lane.status, LaneStatus::Idle);
    assert!(!lane.archived);
    assert_eq!(lane.latest_turn, None);
    assert_eq!(lane.goal, None);
    assert_eq!(lane.token_usage, None);
    assert_eq!(lane.created_at_ms, lane.updated_at_ms);
    assert!(lane.created_at_ms > 1_600_000_000_000);

    assert_eq!(
        registry.lane(&lane.lane_ref).await.unwrap(),
        Some(lane.clone())
    );
    assert_eq!(
        registry.lane_by_thread("019a-thread").await.unwrap(),
        Some(lane)
    );
    assert_eq!(registry.lane("zzzzzz").await.unwrap(), None);
    assert_eq!(registry.lane_by_thread("nope").await.unwrap(), None);
    registry.close().await;
}

#[tokio::test]
async fn refs_are_unique_and_not_sequential() {
    let (_dir, registry) = open_registry().await;
    let mut seen = HashSet::new();
    let mut created = Vec::new();
    for n in 0..100 {
        let lane = registry
            .create_lane(&new_lane(&format!("t-{n}")))
            .await
            .unwrap();
        assert!(
            seen.insert(lane.lane_ref.clone()),
            "duplicate {}",
            lane.lane_ref
        );
        created.push(lane.lane_ref);
    }
    let mut sorted = created.clone();
    sorted.sort();
    assert_ne!(created, sorted, "refs must not come out in order");
    // Refs spread over the alphabet instead of sharing a counter-like prefix.
    let first_chars: HashSet<u8> = created.iter().map(|r| r.as_bytes()[0]).collect();
    assert!(first_chars.len() > 10, "{first_chars:?}");
    registry.close().await;
}

#[tokio::test]
async fn a_second_lane_for_the_same_thread_is_a_conflict() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("thread-1")).await.unwrap();
    let err = registry
        .create_lane(&new_lane("thread-1"))
        .await
        .unwrap_err();
    match &err {
        RegistryError::Conflict { path, what } => {
            assert_eq!(path, registry.path());
            assert!(what.contains("thread-1"), "{what}");
            assert!(what.contains(&lane.lane_ref), "{what}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(registry.lane_counts().await.unwrap().total, 1);
    registry.close().await;
}

#[tokio::test]
async fn metadata_setters_change_one_lane_and_reject_unknown_refs() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("t")).await.unwrap();
    let other = registry.create_lane(&new_lane("u")).await.unwrap();

    registry
        .set_title(&lane.lane_ref, Some("Renamed"))
        .await
        .unwrap();
    registry
        .set_handle(&lane.lane_ref, Some("@ops"))
        .await
        .unwrap();
    registry
        .touch(&lane.lane_ref, lane.updated_at_ms + 5_000)
        .await
        .unwrap();
    let got = registry.lane(&lane.lane_ref).await.unwrap().unwrap();
    assert_eq!(got.title.as_deref(), Some("Renamed"));
    assert_eq!(got.handle.as_deref(), Some("ops"));
    assert_eq!(got.updated_at_ms, lane.updated_at_ms + 5_000);

    // Touching with an older time never moves activity backwards.
    registry.touch(&lane.lane_ref, 1).await.unwrap();
    assert_eq!(
        registry
            .lane(&lane.lane_ref)
            .await
            .unwrap()
            .unwrap()
            .updated_at_ms,
        lane.updated_at_ms + 5_000
    );

    registry.set_title(&lane.lane_ref, None).await.unwrap();
    registry.set_handle(&lane.lane_ref, None).await.unwrap();
    let cleared = registry.lane(&lane.lane_ref).await.unwrap().unwrap();
    assert_eq!((cleared.title, cleared.handle), (None, None));
    assert_eq!(
        registry.lane(&other.lane_ref).await.unwrap().unwrap(),
        other
    );

    for err in [
        registry.set_title("nope00", Some("x")).await.unwrap_err(),
        registry.set_handle("nope00", Some("x")).await.unwrap_err(),
        registry.touch("nope00", 1).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, RegistryError::LaneNotFound { lane_ref, .. } if lane_ref == "nope00"),
            "{err:?}"
        );
    }
    registry.close().await;
}

#[tokio::test]
async fn list_lanes_orders_by_activity_and_filters_by_status_and_archive() {
    let (_dir, registry) = open_registry().await;
    let mut lanes = Vec::new();
    for n in 0..5 {
        lanes.push(
            registry
                .create_lane(&new_lane(&format!("t-{n}")))
                .await
                .unwrap(),
        );
    }
    let base = lanes[0].updated_at_ms;
    // Activity: lane 2 newest, then 0, then 4; 1 and 3 tie and fall back to ref order.
    for (index, offset) in [
        (2, 400_000),
        (0, 300_000),
        (4, 200_000),
        (1, 100_000),
        (3, 100_000),
    ] {
        registry
            .touch(&lanes[index].lane_ref, base + offset)
            .await
            .unwrap();
    }
    let (tie_a, tie_b) = if lanes[1].lane_ref < lanes[3].lane_ref {
        (&lanes[1].lane_ref, &lanes[3].lane_ref)
    } else {
        (&lanes[3].lane_ref, &lanes[1].lane_ref)
    };
    registry
        .record(&[
            facts(&lanes[4].lane_ref, vec![Fact::Status(LaneStatus::Busy)]),
            facts(&lanes[0].lane_ref, vec![Fact::Archived(true)]),
            facts(&lanes[1].lane_ref, vec![Fact::Status(LaneStatus::Archived)]),
        ])
        .await
        .unwrap();

    let all = registry
        .list_lanes(&LaneFilter {
            include_archived: true,
            ..LaneFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        refs(&all),
        vec![
            lanes[2].lane_ref.as_str(),
            lanes[0].lane_ref.as_str(),
            lanes[4].lane_ref.as_str(),
            tie_a.as_str(),
            tie_b.as_str()
        ]
    );

    let live = registry.list_lanes(&LaneFilter::default()).await.unwrap();
    assert_eq!(
        refs(&live),
        vec![
            lanes[2].lane_ref.as_str(),
            lanes[4].lane_ref.as_str(),
            lanes[3].lane_ref.as_str()
        ]
    );
    assert!(live.iter().all(|lane| !lane.archived));

    let archived = registry
        .list_lanes(&LaneFilter {
            status: Some(LaneStatus::Archived),
            ..LaneFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        refs(&archived),
        vec![lanes[0].lane_ref.as_str(), lanes[1].lane_ref.as_str()]
    );
    assert!(
        archived
            .iter()
            .all(|lane| lane.archived && lane.status == LaneStatus::Archived)
    );

    let busy = registry
        .list_lanes(&LaneFilter {
            status: Some(LaneStatus::Busy),
            include_archived: true,
            limit: 0,
        })
        .await
        .unwrap();
    assert_eq!(refs(&busy), vec![lanes[4].lane_ref.as_str()]);

    // Lane 1 was idle when archived: filtering on idle must not show it even with --all.
    let idle = registry
        .list_lanes(&LaneFilter {
            status: Some(LaneStatus::Idle),
            include_archived: true,
            limit: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        refs(&idle),
        vec![lanes[2].lane_ref.as_str(), lanes[3].lane_ref.as_str()]
    );

    let limited = registry
        .list_lanes(&LaneFilter {
            include_archived: true,
            limit: 2,
            ..LaneFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(refs(&limited), refs(&all[..2]));

    // Restoring brings the live status back.
    registry
        .record(&[facts(&lanes[0].lane_ref, vec![Fact::Archived(false)])])
        .await
        .unwrap();
    let restored = registry.lane(&lanes[0].lane_ref).await.unwrap().unwrap();
    assert!(!restored.archived);
    assert_eq!(restored.status, LaneStatus::Idle);
    registry.close().await;
}

#[tokio::test]
async fn lane_counts_count_archived_lanes_as_archived_only() {
    let (_dir, registry) = open_registry().await;
    let mut lanes = Vec::new();
    for n in 0..6 {
        lanes.push(new_lane_ref(&registry, &format!("t-{n}")).await);
    }
    registry
        .record(&[
            facts(&lanes[0], vec![Fact::Status(LaneStatus::Busy)]),
            facts(&lanes[1], vec![Fact::Status(LaneStatus::Busy)]),
            facts(&lanes[2], vec![Fact::Status(LaneStatus::WaitingApproval)]),
            facts(&lanes[3], vec![Fact::Status(LaneStatus::Error)]),
            // Busy underneath, but archived: counts as archived, not busy.
            facts(
                &lanes[4],
                vec![Fact::Status(LaneStatus::Busy), Fact::Archived(true)],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        registry.lane_counts().await.unwrap(),
        LaneCounts {
            total: 6,
            idle: 1,
            busy: 2,
            retrying: 0,
            waiting_approval: 1,
            error: 1,
            archived: 1,
        }
    );
    let archived = registry.lane(&lanes[4]).await.unwrap().unwrap();
    assert_eq!(
        (archived.status, archived.archived),
        (LaneStatus::Archived, true)
    );

    // A status recorded while archived changes the live status, not the archived flag.
    registry
        .record(&[facts(&lanes[4], vec![Fact::Status(LaneStatus::Idle)])])
        .await
        .unwrap();
    assert_eq!(
        registry.lane(&lanes[4]).await.unwrap().unwrap().status,
        LaneStatus::Archived
    );
    registry
        .record(&[facts(&lanes[4], vec![Fact::Archived(false)])])
        .await
        .unwrap();
    assert_eq!(
        registry.lane(&lanes[4]).await.unwrap().unwrap().status,
        LaneStatus::Idle
    );
    registry.close().await;
}

#[tokio::test]
async fn legacy_archived_status_rows_still_read_as_archived() {
    let (_dir, registry) = open_registry().await;
    let mut conn = raw(registry.path()).await;
    sqlx::query(
        "INSERT INTO lanes (ref, thread_id, ownership, status, created_at_ms, updated_at_ms) \
         VALUES ('old001', 'thread-old', 'owned', 'archived', 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let bad_archived = sqlx::query("UPDATE lanes SET archived = 2 WHERE ref = 'old001'")
        .execute(&mut conn)
        .await;
    assert!(bad_archived.is_err(), "archived is a 0/1 flag");
    conn.close().await.unwrap();

    let lane = registry.lane("old001").await.unwrap().unwrap();
    assert_eq!((lane.status, lane.archived), (LaneStatus::Archived, true));
    assert_eq!(registry.lane_counts().await.unwrap().archived, 1);
    assert!(
        registry
            .list_lanes(&LaneFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    registry.close().await;
}

#[tokio::test]
async fn lanes_by_threads_reads_the_lanes_of_many_threads_at_once() {
    let (_dir, registry) = open_registry().await;
    let a = registry.create_lane(&new_lane("thread-a")).await.unwrap();
    let b = registry.create_lane(&new_lane("thread-b")).await.unwrap();
    registry.create_lane(&new_lane("thread-c")).await.unwrap();
    registry
        .record(&[facts(
            &b.lane_ref,
            vec![Fact::TurnStarted {
                turn_id: "t1".into(),
                at_ms: 1,
            }],
        )])
        .await
        .unwrap();
    let ids: Vec<String> = ["thread-a", "thread-b", "no-lane"]
        .map(str::to_owned)
        .to_vec();
    let mut found = registry.lanes_by_threads(&ids).await.unwrap();
    found.sort_by(|x, y| x.thread_id.cmp(&y.thread_id));
    assert_eq!(refs(&found), [a.lane_ref.as_str(), b.lane_ref.as_str()]);
    assert_eq!(found[0].status, LaneStatus::Idle);
    assert_eq!(found[1].status, LaneStatus::Busy);
    assert!(registry.lanes_by_threads(&[]).await.unwrap().is_empty());
    registry.close().await;
}

/// A lane whose stored columns do not convert makes a listing fail as a damaged registry,
/// naming the lane; the lanes parsed before it are not answered.
#[tokio::test]
async fn a_lane_that_does_not_convert_fails_the_listing_as_corrupt() {
    let (_dir, registry) = open_registry().await;
    registry
        .create_lane(&new_lane("thread-fine"))
        .await
        .unwrap();
    let mut conn = raw(registry.path()).await;
    // Damage as a bad disk or another tool would: past the schema's checks.
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO lanes (ref, thread_id, ownership, status, latest_turn_id, \
         latest_turn_status, created_at_ms, updated_at_ms) \
         VALUES ('bad001', 'thread-bad', 'owned', 'idle', 'turn-1', 'sideways', 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let listed = registry.list_lanes(&LaneFilter::default()).await;
    let paged = registry
        .list_lanes_page(&dispatch_registry::PageFilter::default(), None, 10)
        .await
        .map(|page| page.lanes);
    for err in [listed.unwrap_err(), paged.unwrap_err()] {
        let RegistryError::Corrupt { detail, .. } = &err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert!(detail.contains("bad001"), "{detail}");
        assert!(detail.contains("sideways"), "{detail}");
    }
    assert_eq!(
        registry
            .lane_by_thread("thread-fine")
            .await
            .unwrap()
            .map(|l| l.thread_id),
        Some("thread-fine".to_owned())
    );
}

/// A listing of many lanes answers every lane once, newest activity first, and pages continue
/// where the last one stopped.
#[tokio::test]
async fn listings_of_many_lanes_answer_each_lane_once_in_order() {
    let (_dir, registry) = open_registry().await;
    for n in 0..70 {
        registry
            .create_lane(&new_lane(&format!("thread-{n:02}")))
            .await
            .unwrap();
    }
    let all = registry.list_lanes(&LaneFilter::default()).await.unwrap();
    assert_eq!(all.len(), 70);
    assert!(
        all.windows(2)
            .all(|w| (w[0].updated_at_ms, &w[1].lane_ref) >= (w[1].updated_at_ms, &w[0].lane_ref))
    );
    let filter = dispatch_registry::PageFilter::default();
    let first = registry.list_lanes_page(&filter, None, 50).await.unwrap();
    assert_eq!(first.lanes.len(), 50);
    let second = registry
        .list_lanes_page(&filter, first.next.as_ref(), 50)
        .await
        .unwrap();
    assert_eq!(second.lanes.len(), 20);
    assert!(second.next.is_none());
    let paged: Vec<&str> = first
        .lanes
        .iter()
        .chain(&second.lanes)
        .map(|l| l.lane_ref.as_str())
        .collect();
    assert_eq!(paged, refs(&all));
}

/// Pages converted as they are read (`list_lanes_page_as`, what `list` uses) answer the same
/// lanes in the same order as one listing, whatever the page size (lanes created in the same
/// millisecond are ordered by ref), with and without a filter, and say where the next page
/// starts only when there is one.
#[tokio::test]
async fn pages_converted_as_read_answer_each_lane_once_in_order() {
    let total: u32 = 140;
    let (_dir, registry) = open_registry().await;
    lanes_with_every_third_archived(&registry, total).await;
    let all = registry
        .list_lanes(&LaneFilter {
            include_archived: true,
            ..LaneFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), usize::try_from(total).unwrap());
    let every = dispatch_registry::PageFilter {
        include_archived: true,
        ..dispatch_registry::PageFilter::default()
    };
    for limit in [1, 7, 64, total - 1, total, total + 1, 1000] {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = registry
                .list_lanes_page_as(&every, after.as_ref(), limit, |lane| lane.lane_ref)
                .await
                .unwrap();
            assert!(page.lanes.len() <= usize::try_from(limit).unwrap());
            let more = page.next.is_some();
            if more {
                assert_eq!(page.next.as_ref().map(|n| &n.lane_ref), page.lanes.last());
            }
            paged.extend(page.lanes);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, refs(&all), "pages of {limit}");
    }
    let whole = registry.list_lanes_page(&every, None, total).await.unwrap();
    assert!(whole.next.is_none());
    // A filter applies as before.
    let archived = registry
        .list_lanes_page(
            &dispatch_registry::PageFilter {
                status: Some(LaneStatus::Archived),
                ..dispatch_registry::PageFilter::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    let expected: Vec<&str> = all
        .iter()
        .filter(|l| l.archived)
        .map(|l| l.lane_ref.as_str())
        .collect();
    assert_eq!(refs(&archived.lanes), expected);
    assert_eq!(expected.len(), usize::try_from(total.div_ceil(3)).unwrap());
}

/// `total` lanes (threads `thread-000`, `thread-001`, …), every third one archived: what the
/// paging tests page through, with and without the archive filter.
async fn lanes_with_every_third_archived(registry: &dispatch_registry::Registry, total: u32) {
    for n in 0..total {
        let lane = registry
            .create_lane(&new_lane(&format!("thread-{n:03}")))
            .await
            .unwrap();
        if n % 3 == 0 {
            registry
                .record(&[facts(&lane.lane_ref, vec![Fact::Archived(true)])])
                .await
                .unwrap();
        }
    }
}

/// The filters the paging tests page with: the default, archived lanes included, and
/// archived lanes only.
fn paging_filters() -> [dispatch_registry::PageFilter; 3] {
    [
        dispatch_registry::PageFilter::default(),
        dispatch_registry::PageFilter {
            include_archived: true,
            ..dispatch_registry::PageFilter::default()
        },
        dispatch_registry::PageFilter {
            status: Some(LaneStatus::Archived),
            ..dispatch_registry::PageFilter::default()
        },
    ]
}

/// The stamps of every lane, newest activity first.
async fn stamps(registry: &dispatch_registry::Registry) -> Vec<LaneStamp> {
    let mut seen = None;
    let every = dispatch_registry::PageFilter {
        include_archived: true,
        ..dispatch_registry::PageFilter::default()
    };
    registry
        .list_lanes_page_kept(
            &every,
            None,
            1000,
            |stamps| {
                seen = Some(stamps.to_vec());
                Vec::<Kept<LaneRow, ()>>::new()
            },
            |row, _, ()| row,
        )
        .await
        .unwrap();
    seen.unwrap()
}

/// The stamp of `lane_ref`'s row.
async fn stamp_of(registry: &dispatch_registry::Registry, lane_ref: &str) -> LaneStamp {
    stamps(registry)
        .await
        .into_iter()
        .find(|s| s.lane_ref == lane_ref)
        .unwrap()
}

/// The version of `lane_ref`'s row.
async fn version_of(registry: &dispatch_registry::Registry, lane_ref: &str) -> i64 {
    stamp_of(registry, lane_ref).await.version
}

/// Every UPDATE of a lane's row bumps its version, whoever writes it (the registry's calls,
/// ingest's batches, another connection's raw SQL, an UPDATE that changes nothing), and
/// leaves the other lanes' versions alone; every INSERT into `lanes` makes a new incarnation
/// (`INSERT OR REPLACE` too, which brings a row back with the version it is given).
#[tokio::test]
async fn every_update_of_a_lane_bumps_its_version_and_every_insert_makes_an_incarnation() {
    let (_dir, registry) = open_registry().await;
    let lane = registry.create_lane(&new_lane("thread-a")).await.unwrap();
    let other = registry.create_lane(&new_lane("thread-b")).await.unwrap();
    let a = lane.lane_ref.as_str();
    let first = stamp_of(&registry, a).await;
    let second = stamp_of(&registry, &other.lane_ref).await;
    assert!(second.incarnation > first.incarnation);
    let mut version = first.version;
    let mut conn = raw(registry.path()).await;
    for step in 0..10 {
        match step {
            0 => registry
                .record(&[facts(a, vec![Fact::Status(LaneStatus::WaitingApproval)])])
                .await
                .unwrap(),
            1 => registry
                .record(&[facts(a, vec![Fact::Title(Some("t".into()))])])
                .await
                .unwrap(),
            2 => registry.set_title(a, Some("u")).await.unwrap(),
            3 => registry.set_handle(a, Some("h")).await.unwrap(),
            4 => registry.touch(a, lane.updated_at_ms + 10).await.unwrap(),
            5 => registry.note_compacted(a, 5).await.unwrap(),
            6 => {
                sqlx::query("UPDATE lanes SET model = 'raw' WHERE ref = ?1")
                    .bind(a)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            7 => {
                sqlx::query("UPDATE lanes SET model = model WHERE ref = ?1")
                    .bind(a)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            8 => {
                // Several lanes in one statement: each row is bumped once.
                sqlx::query("UPDATE lanes SET cwd = '/x'")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            _ => {
                // A version set back by hand is bumped past where it was: a row's version
                // only rises, so no later write can land on a stamp a reader has seen.
                sqlx::query("UPDATE lanes SET title = 'y', version = version - 1 WHERE ref = ?1")
                    .bind(a)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        let now = version_of(&registry, a).await;
        // One statement bumps a row once; a batch of ingest may run two on it.
        if step >= 6 {
            assert_eq!(now, version + 1, "step {step}");
        } else {
            assert!(now > version, "step {step}: {now} after {version}");
        }
        version = now;
    }
    assert_eq!(
        version_of(&registry, &other.lane_ref).await,
        second.version + 1,
        "only its own writes"
    );
    assert_eq!(stamp_of(&registry, a).await.incarnation, first.incarnation);
    let third = registry.create_lane(&new_lane("thread-c")).await.unwrap();
    let third = stamp_of(&registry, &third.lane_ref).await;
    assert!(third.incarnation > second.incarnation);
    // The row written back as it was, version included: a new incarnation all the same.
    sqlx::query("INSERT OR REPLACE INTO lanes SELECT * FROM lanes WHERE ref = ?1")
        .bind(&other.lane_ref)
        .execute(&mut conn)
        .await
        .unwrap();
    let back = stamp_of(&registry, &other.lane_ref).await;
    assert!(
        back.incarnation > third.incarnation,
        "{back:?} after {third:?}"
    );
    conn.close().await.unwrap();
}

/// Pages for a reader that keeps lanes (`list_lanes_page_kept`, what `list` uses) answer
/// the same lanes in the same order with the same `next` as plain pages, whatever the page
/// size and filter, taking the kept lanes as kept and handing only the others' rows to
/// `make`, with what the reader said of each: whether it holds few of the page (the rows
/// read by name) or most (the whole page read).
#[tokio::test]
async fn kept_pages_answer_what_plain_pages_answer() {
    let total: u32 = 90;
    let (_dir, registry) = open_registry().await;
    lanes_with_every_third_archived(&registry, total).await;
    let all = stamps(&registry).await;
    /// Which lanes (by place in the activity order) a set keeps.
    type Keeps = fn(usize) -> bool;
    let sets: [(&str, Keeps); 5] = [
        ("none", |_| false),
        ("every 10th", |at| at % 10 == 0),
        ("every other", |at| at % 2 == 0),
        ("all but every 10th", |at| at % 10 != 0),
        ("all", |_| true),
    ];
    for (name, keeps) in sets {
        // The lanes kept, with their versions.
        let kept: std::collections::HashMap<String, i64> = all
            .iter()
            .enumerate()
            .filter(|(at, _)| keeps(*at))
            .map(|(_, s)| (s.lane_ref.clone(), s.version))
            .collect();
        println!("keeping {name}");
        kept_pages_agree(&registry, &kept, total).await;
    }
}

/// Pages read with their stamps in the rows (`list_lanes_page_stamped`, what `list` probes a
/// churning page with) answer the same rows in the same order with the same `next` as plain
/// pages, whatever the page size and filter, each row with the stamp the stamps statement
/// reads for it.
#[tokio::test]
async fn stamped_pages_answer_what_plain_pages_answer() {
    let total: u32 = 40;
    let (_dir, registry) = open_registry().await;
    lanes_with_every_third_archived(&registry, total).await;
    let all: std::collections::HashMap<String, LaneStamp> = stamps(&registry)
        .await
        .into_iter()
        .map(|s| (s.lane_ref.clone(), s))
        .collect();
    assert!(
        all.values()
            .any(|s| s.version > all.values().map(|s| s.version).min().unwrap())
    );
    for filter in paging_filters() {
        for limit in [1, 7, total - 1, total, total + 1, 1000] {
            let mut after = None;
            loop {
                let plain = registry
                    .list_lanes_page(&filter, after.as_ref(), limit)
                    .await
                    .unwrap();
                let page = registry
                    .list_lanes_page_stamped(&filter, after.as_ref(), limit, |row, stamp| {
                        (row, stamp.clone())
                    })
                    .await
                    .unwrap();
                let (rows, stamped): (Vec<LaneRow>, Vec<LaneStamp>) =
                    page.lanes.into_iter().unzip();
                assert_eq!(rows, plain.lanes, "{filter:?} pages of {limit}");
                assert_eq!(page.next, plain.next);
                for stamp in stamped {
                    assert_eq!(Some(&stamp), all.get(&stamp.lane_ref));
                }
                match plain.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
    }
}

/// [`kept_pages_answer_what_plain_pages_answer`] for one set of kept lanes.
async fn kept_pages_agree(
    registry: &dispatch_registry::Registry,
    kept: &std::collections::HashMap<String, i64>,
    total: u32,
) {
    for filter in paging_filters() {
        for limit in [1, 7, 64, total - 1, total, total + 1, 1000] {
            let mut after = None;
            loop {
                let plain = registry
                    .list_lanes_page(&filter, after.as_ref(), limit)
                    .await
                    .unwrap();
                let mut made = Vec::new();
                let page = registry
                    .list_lanes_page_kept(
                        &filter,
                        after.as_ref(),
                        limit,
                        |stamps| {
                            stamps
                                .iter()
                                .map(|s| {
                                    if kept.get(&s.lane_ref) == Some(&s.version) {
                                        Kept::Held(format!("kept {}", s.lane_ref))
                                    } else {
                                        Kept::Make(format!("for {}", s.lane_ref))
                                    }
                                })
                                .collect()
                        },
                        |row, stamp, with: String| {
                            assert_eq!(row.lane_ref, stamp.lane_ref);
                            assert_eq!(with, format!("for {}", row.lane_ref));
                            made.push(row.lane_ref.clone());
                            format!("made {}", row.lane_ref)
                        },
                    )
                    .await
                    .unwrap();
                let expected: Vec<String> = plain
                    .lanes
                    .iter()
                    .map(|l| {
                        let how = if kept.contains_key(&l.lane_ref) {
                            "kept"
                        } else {
                            "made"
                        };
                        format!("{how} {}", l.lane_ref)
                    })
                    .collect();
                assert_eq!(page.lanes, expected, "{filter:?} pages of {limit}");
                assert_eq!(page.next, plain.next);
                let mut made_expected: Vec<String> = plain
                    .lanes
                    .iter()
                    .filter(|l| !kept.contains_key(&l.lane_ref))
                    .map(|l| l.lane_ref.clone())
                    .collect();
                made_expected.sort();
                made.sort();
                assert_eq!(made, made_expected, "each lane not kept made once");
                match plain.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
    }
}
