//! When triggers fire: parsing the schedules `trigger add` takes (intervals, cron expressions
//! with their time zone, idle times, events) once, at `add`, and computing due times from
//! them. Cron expressions are `croner`'s, evaluated in a `jiff` time zone; durations are
//! `jiff`'s friendly format (`30s`, `5m`, `2h`, `1d`, `1h30m`). See ADR 0014.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use dispatch_contract::{DispatchError, Hint};
use dispatch_registry::TriggerKind;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

/// The shortest interval or idle time a trigger takes.
const MIN_MS: i64 = 1_000;
/// Due times counted at most when coalescing missed fires of a cron trigger.
const COUNT_LIMIT: i64 = 100_000;

/// What makes a trigger fire, parsed.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// At this interval (milliseconds).
    Every(i64),
    /// On a cron schedule, in a time zone.
    Cron {
        /// The expression.
        cron: Box<Cron>,
        /// Its time zone.
        tz: TimeZone,
    },
    /// Once per idle period of the lane, after this long (milliseconds).
    IdleFor(i64),
    /// When something happens to the lane.
    On(OnEvent),
}

/// The lane events an `on` trigger hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEvent {
    /// The lane's turn completed.
    TurnCompleted,
    /// The lane asks for an approval.
    Approval,
}

impl OnEvent {
    /// The stored spec.
    pub fn as_str(self) -> &'static str {
        match self {
            OnEvent::TurnCompleted => "turn_completed",
            OnEvent::Approval => "approval",
        }
    }

    /// As the input names it.
    pub fn shown(self) -> &'static str {
        match self {
            OnEvent::TurnCompleted => "turn-completed",
            OnEvent::Approval => "approval",
        }
    }
}

fn duration_hint() -> Hint {
    Hint::new(
        "a duration is a number and a unit: `30s`, `5m`, `2h`, `1d`, or a combination like \
         `1h30m`; at least 1 s",
    )
}

fn cron_hint() -> Hint {
    Hint::new(
        "a cron expression has five fields, minute hour day-of-month month day-of-week (`0 9 * \
         * 1-5`: 09:00 on weekdays; `*/15 * * * *`: every 15 minutes), or six with a leading \
         seconds field; `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` work too",
    )
}

/// Parses a duration of field `field` (`every`, `idle_for`) into milliseconds: positive, at
/// least [`MIN_MS`], in whole units up to days (a day is 24 hours).
pub fn parse_duration(field: &str, text: &str) -> Result<i64, DispatchError> {
    let invalid = |why: String| {
        DispatchError::invalid_input(format!("`{field}`: {why}")).with_hint(duration_hint())
    };
    let span: Span = text
        .trim()
        .parse()
        .map_err(|err| invalid(format!("`{text}` is not a duration ({err})")))?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            invalid(format!(
                "`{text}` uses months or years, which have no fixed length"
            ))
        })?;
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 {
        return Err(invalid(format!("`{text}` is not a positive duration")));
    }
    if ms < MIN_MS {
        return Err(invalid(format!("`{text}` is shorter than 1 s")));
    }
    Ok(ms)
}

/// A duration in milliseconds as people write it: `2s`, `1h 30m`.
pub fn show_duration(ms: i64) -> String {
    format!("{:#}", SignedDuration::from_millis(ms))
}

/// The time zone named `name` (IANA), or the daemon's local one.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, DispatchError> {
    match name {
        None => Ok(TimeZone::system()),
        Some(name) => TimeZone::get(name).map_err(|_| {
            DispatchError::invalid_input(format!("`tz`: `{name}` is not a known time zone"))
                .with_hint(Hint::new(
                    "give an IANA time zone name, like `Europe/Paris`, `America/New_York` or \
                     `UTC`",
                ))
        }),
    }
}

/// Parses a cron expression (5 fields, 6 with seconds, or a `@nickname`).
pub fn parse_cron(expr: &str) -> Result<Cron, DispatchError> {
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    parser.parse(expr).map_err(|err| {
        DispatchError::invalid_input(format!("`cron`: `{expr}` is not a cron expression ({err})"))
            .with_hint(cron_hint())
    })
}

impl Schedule {
    /// The schedule a stored trigger describes (stored specs were checked by `add`).
    pub fn of(kind: TriggerKind, spec: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let ms = || {
            spec.parse::<i64>()
                .map_err(|_| format!("the stored interval `{spec}` is not a number"))
        };
        Ok(match kind {
            TriggerKind::Every => Schedule::Every(ms()?),
            TriggerKind::IdleFor => Schedule::IdleFor(ms()?),
            TriggerKind::Cron => Schedule::Cron {
                cron: Box::new(parse_cron(spec).map_err(|err| err.message)?),
                tz: time_zone(tz).map_err(|err| err.message)?,
            },
            TriggerKind::On => Schedule::On(match spec {
                "turn_completed" => OnEvent::TurnCompleted,
                "approval" => OnEvent::Approval,
                other => return Err(format!("the stored event `{other}` is not known")),
            }),
        })
    }

    /// The spec as `trigger list` shows it.
    pub fn spec_shown(&self, stored: &str) -> String {
        match self {
            Schedule::Every(ms) | Schedule::IdleFor(ms) => show_duration(*ms),
            Schedule::Cron { .. } => stored.to_owned(),
            Schedule::On(event) => event.shown().to_owned(),
        }
    }

    /// When it fires, in words.
    pub fn describe(&self, stored: &str, tz: Option<&str>) -> String {
        match self {
            Schedule::Every(ms) => format!("every {}", show_duration(*ms)),
            Schedule::Cron { .. } => format!(
                "cron `{stored}` ({})",
                tz.unwrap_or("the daemon's local time zone")
            ),
            Schedule::IdleFor(ms) => {
                format!("after the lane is idle for {}", show_duration(*ms))
            }
            Schedule::On(OnEvent::TurnCompleted) => "when the lane's turn completes".to_owned(),
            Schedule::On(OnEvent::Approval) => "when the lane asks for an approval".to_owned(),
        }
    }

    /// The first due time strictly after `after_ms`, for the kinds that have due times of
    /// their own (`every`, `cron`); `None` for the others and for a cron expression that
    /// matches no time in the coming years.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Every(ms) => after_ms.checked_add(*ms),
            Schedule::Cron { cron, tz } => {
                // Cron has whole seconds: search from the second `after_ms` falls in.
                let second = after_ms.div_euclid(1000) * 1000;
                let start = Timestamp::from_millisecond(second)
                    .ok()?
                    .to_zoned(tz.clone());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                let next = next.timestamp().as_millisecond();
                (next > after_ms).then_some(next).or_else(|| {
                    let later = Timestamp::from_millisecond(next).ok()?.to_zoned(tz.clone());
                    let again = cron.find_next_occurrence(&later, false).ok()?;
                    Some(again.timestamp().as_millisecond())
                })
            }
            Schedule::IdleFor(_) | Schedule::On(_) => None,
        }
    }

    /// For a trigger due at `due_ms` and fired at `now_ms`: how many due times this fire
    /// stands for (those at or before `now_ms`, at least the one due), and the first due time
    /// after `now_ms`.
    pub fn catch_up(&self, due_ms: i64, now_ms: i64) -> (i64, Option<i64>) {
        if now_ms < due_ms {
            return (1, Some(due_ms));
        }
        match self {
            Schedule::Every(period) if *period > 0 => {
                // In i128, exact for any two times (a due time written by hand can be far in
                // the past); a count past i64 saturates, a next time past it is none.
                let period = i128::from(*period);
                let missed = (i128::from(now_ms) - i128::from(due_ms)) / period + 1;
                let next = i128::from(due_ms) + missed * period;
                (
                    i64::try_from(missed).unwrap_or(i64::MAX),
                    i64::try_from(next).ok(),
                )
            }
            Schedule::Cron { .. } => {
                let mut count = 1;
                let mut at = due_ms;
                loop {
                    match self.next_after(at) {
                        Some(next) if next <= now_ms && count < COUNT_LIMIT => {
                            count += 1;
                            at = next;
                        }
                        Some(next) if next <= now_ms => return (count, self.next_after(now_ms)),
                        next => return (count, next),
                    }
                }
            }
            _ => (1, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_accepted_forms() {
        for (text, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("90s", 90_000),
        ] {
            assert_eq!(parse_duration("every", text).ok(), Some(ms), "{text}");
        }
        for text in ["0s", "-5m", "5", "soon", "500ms", "1mo", "1y", ""] {
            let err = parse_duration("every", text).expect_err(text);
            assert_eq!(err.code, dispatch_contract::ErrorCode::InvalidInput);
            assert!(err.message.starts_with("`every`"), "{}", err.message);
        }
    }

    #[test]
    fn cron_expressions_and_zones_are_checked() {
        for expr in [
            "0 9 * * 1-5",
            "*/5 * * * *",
            "@daily",
            "*/2 * * * * *",
            "0 9 * * MON",
        ] {
            assert!(parse_cron(expr).is_ok(), "{expr}");
        }
        for expr in ["61 * * * *", "* * *", "bad", "0 0 * * * * 2025"] {
            assert!(parse_cron(expr).is_err(), "{expr}");
        }
        assert!(time_zone(Some("Europe/Paris")).is_ok());
        assert!(time_zone(Some("UTC")).is_ok());
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn the_bundled_time_zone_database_knows_the_zones() {
        // Machines without /usr/share/zoneinfo still resolve zones (ADR 0014).
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        assert!(bundled.get("Europe/Paris").is_ok());
        assert!(bundled.get("America/New_York").is_ok());
    }

    #[test]
    fn cron_due_times_follow_the_time_zone() {
        let schedule = Schedule::Cron {
            cron: Box::new(parse_cron("0 9 * * *").expect("cron")),
            tz: time_zone(Some("Europe/Paris")).expect("tz"),
        };
        // 2026-01-15T07:30:00Z is 08:30 in Paris: next 09:00 Paris is 08:00Z.
        let at: Timestamp = "2026-01-15T07:30:00Z".parse().expect("ts");
        let next = schedule.next_after(at.as_millisecond()).expect("next");
        let want: Timestamp = "2026-01-15T08:00:00Z".parse().expect("ts");
        assert_eq!(next, want.as_millisecond());
        // Exactly at a due time, the next one is a day later.
        assert_eq!(
            schedule.next_after(next),
            Some(next + 86_400_000),
            "strictly after"
        );
    }

    #[test]
    fn missed_fires_are_counted_and_the_next_is_after_now() {
        let every = Schedule::Every(2_000);
        assert_eq!(every.catch_up(10_000, 10_005), (1, Some(12_000)));
        assert_eq!(every.catch_up(10_000, 15_000), (3, Some(16_000)));
        assert_eq!(every.catch_up(10_000, 9_000), (1, Some(10_000)));
        // A due time far in the past (a row written by hand) neither overflows nor wraps.
        assert_eq!(
            Schedule::Every(1).catch_up(i64::MIN, 10_000),
            (i64::MAX, Some(10_001))
        );
        assert_eq!(
            Schedule::Every(2_000).catch_up(i64::MIN, 10_000),
            (4_611_686_018_427_393, Some(10_192))
        );
        let cron = Schedule::Cron {
            cron: Box::new(parse_cron("* * * * * *").expect("cron")),
            tz: TimeZone::UTC,
        };
        let due = 1_800_000_000_000;
        assert_eq!(cron.catch_up(due, due + 6_500), (7, Some(due + 7_000)));
        assert_eq!(
            Schedule::Cron {
                cron: Box::new(parse_cron("0 9 * * *").expect("cron")),
                tz: TimeZone::UTC
            }
            .catch_up(due, due),
            (
                1,
                Schedule::Cron {
                    cron: Box::new(parse_cron("0 9 * * *").expect("cron")),
                    tz: TimeZone::UTC
                }
                .next_after(due)
            )
        );
    }
}
