//! Human output of the operations: one [`Render`] implementation per operation's typed
//! output (`<Op>Output`). The generated `generated::cli::shown` decodes the output into its
//! type and calls it; an implementation that overrides nothing prints the output object as
//! pretty JSON, so a new operation needs only `impl Render for NewOpOutput {}`.
//!
//! Every string a renderer prints goes through [`escape`] (or [`block`] for multi-line
//! message text): titles, handles, paths, messages and errors come from users and models, and
//! a control character in them must not reach the terminal as one. `--json` output is not
//! rendered here and stays exact.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::process::ExitCode;

use comfy_table::{Table, presets::NOTHING};
use dispatch_contract::types::*;
use dispatch_contract::{DispatchError, Operation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A borderless table with its trailing padding trimmed.
fn plain(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `c` must not reach a terminal as it is: control characters (C0, DEL, C1), the
/// Unicode line and paragraph separators, and the bidirectional overrides and isolates.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        other => {
            let _infallible = write!(out, "\\u{{{:x}}}", u32::from(other));
        }
    }
}

/// `s` on one line, safe for a terminal: every control character (newlines and escape
/// sequences included) is shown escaped, as `\n` or `\u{1b}`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Multi-line text (a message in `tail`), safe for a terminal: newlines and tabs are kept,
/// every continuation line is indented by `indent` so no line of the text can pass for a
/// line of dispatch's own output, and every other control character is escaped.
pub fn block(s: &str, indent: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(indent);
            }
            '\t' => out.push('\t'),
            c if unsafe_char(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// Pretty JSON for the terminal: serde_json escapes C0 controls in strings but leaves DEL,
/// C1 and the other characters of [`unsafe_char`] raw; they become `\u` escapes (still JSON).
fn json_text(output: &Value) -> String {
    let pretty = serde_json::to_string_pretty(output).unwrap_or_default();
    let mut out = String::with_capacity(pretty.len());
    for c in pretty.chars() {
        if unsafe_char(c) && c != '\n' {
            let _infallible = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// How the exit status of a successful call is known.
pub enum ExitStatus<T: ?Sized> {
    /// It is success whatever the output says: with `--json` the output is then passed
    /// through as the daemon wrote it, never decoded.
    Success,
    /// It is read from the typed output (`doctor` exits 1 when a check fails); with `--json`
    /// the output is decoded for it.
    FromOutput(fn(&T) -> ExitCode),
}

/// How an operation's output looks to a person, and the exit status of a successful call.
pub trait Render: Serialize {
    /// The exit status of a successful call; see [`ExitStatus`].
    const EXIT: ExitStatus<Self> = ExitStatus::Success;

    /// The human text. The default is the output object as pretty JSON, escaped for a
    /// terminal.
    fn human(&self) -> String {
        json_text(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// The human text, or why it could not be written: what the CLI shows. The default is
    /// [`Render::human`], which cannot fail; a renderer that can (one that reads back items
    /// the daemon encoded before, with [`read_back`]) implements this one instead, so a
    /// failure is an error with its exit status, never text on stdout.
    fn try_human(&self) -> Result<String, DispatchError> {
        Ok(self.human())
    }
}

/// The exit status of a successful call with this output.
fn exit_of<T: Render>(output: &T) -> ExitCode {
    match T::EXIT {
        ExitStatus::Success => ExitCode::SUCCESS,
        ExitStatus::FromOutput(exit) => exit(output),
    }
}

/// The exit status of a successful call whose output is the JSON `text`: `T`'s
/// [`Render::EXIT`], decoding the text only when that reads the output. An output that does
/// not decode (a daemon built from another contract) exits with success, as it shows.
pub fn exit_as<T: Render + DeserializeOwned>(text: &str) -> ExitCode {
    match T::EXIT {
        ExitStatus::Success => ExitCode::SUCCESS,
        ExitStatus::FromOutput(exit) => {
            serde_json::from_str::<T>(text).map_or(ExitCode::SUCCESS, |typed| exit(&typed))
        }
    }
}

/// What the CLI prints for a successful call, and its exit status. The text is rendered
/// only when asked for: with `--json` only the exit status is needed.
pub struct Shown {
    render: Box<dyn FnOnce() -> Result<String, DispatchError>>,
    /// The exit status.
    pub exit: ExitCode,
}

impl Shown {
    /// The human text, or the renderer's error ([`Render::try_human`]).
    pub fn text(self) -> Result<String, DispatchError> {
        (self.render)()
    }
}

/// `output` decoded as `T` and rendered; an output that does not decode (a daemon built from
/// another contract) is shown as escaped JSON.
pub fn shown_as<T: Render + DeserializeOwned + 'static>(output: &Value) -> Shown {
    match T::deserialize(output) {
        Ok(typed) => Shown {
            exit: exit_of(&typed),
            render: Box::new(move || typed.try_human()),
        },
        Err(_) => {
            let text = json_text(output);
            Shown {
                exit: ExitCode::SUCCESS,
                render: Box::new(move || Ok(text)),
            }
        }
    }
}

/// The human rendering of `op`'s `output`, or the renderer's error.
pub fn human(op: &Operation, output: &Value) -> Result<String, DispatchError> {
    crate::generated::cli::shown(op, output).text()
}

/// The exit status of a successful call of `op` with `output`.
pub fn exit_code(op: &Operation, output: &Value) -> ExitCode {
    crate::generated::cli::shown(op, output).exit
}

/// `s` escaped, owned.
fn e(s: &str) -> String {
    escape(s).into_owned()
}

/// An optional string, escaped, or `-`.
fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "-".to_owned(), e)
}

/// A value shown with `Display` (numbers, enums), escaped.
fn d(value: impl std::fmt::Display) -> String {
    e(&value.to_string())
}

/// An optional value shown with `Display`, or `-`.
fn od<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_owned(), d)
}

/// A list of strings, escaped, joined with `,`.
fn list(items: &[String]) -> String {
    items.iter().map(|s| e(s)).collect::<Vec<_>>().join(",")
}

/// A borderless table with these rows.
fn rows(rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    for row in rows {
        table.add_row(row);
    }
    plain(&table)
}

/// A borderless table with a header.
fn headed(header: &[&str], body: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(header.to_vec());
    for row in body {
        table.add_row(row);
    }
    plain(&table)
}

impl Render for UpOutput {
    fn human(&self) -> String {
        let verb = match self.status {
            UpOutputStatus::Started => "started",
            UpOutputStatus::Running => "already running",
        };
        format!("dispatchd {verb} (pid {}) on {}", self.pid, e(&self.socket))
    }
}

impl Render for DownOutput {
    fn human(&self) -> String {
        let pid = od(&self.pid);
        let mut lines = vec![match self.status {
            DownOutputStatus::Stopped => format!("dispatchd stopped (pid {pid})"),
            DownOutputStatus::Killed => {
                format!("dispatchd did not exit in time and was killed (pid {pid})")
            }
            DownOutputStatus::NotRunning => "dispatchd is not running".to_owned(),
        }];
        lines.extend(
            self.cleaned
                .iter()
                .map(|p| format!("removed stale {}", e(p))),
        );
        lines.join("\n")
    }
}

impl Render for DaemonStopIfIdleOutput {
    fn human(&self) -> String {
        format!(
            "dispatchd was idle and is stopping (pid {}); it starts no new model work",
            self.pid
        )
    }
}

impl Render for DaemonStatusOutput {
    fn human(&self) -> String {
        let app = &self.app_server;
        let lanes = &self.lanes;
        let mut table = vec![
            vec![
                "daemon".into(),
                format!(
                    "pid {}, up {} s, version {}",
                    self.pid,
                    self.uptime_s,
                    e(&self.version)
                ),
            ],
            vec!["socket".into(), e(&self.socket)],
            vec!["registry".into(), format!("schema {}", self.schema_version)],
            vec![
                "app server".into(),
                format!(
                    "{} (pid {}, version {}, restarts {})",
                    d(app.state),
                    od(&app.pid),
                    opt(&app.version),
                    app.restarts
                ),
            ],
        ];
        // A pool shows each process; one process is the line above.
        if self.app_servers.len() > 1 {
            for process in &self.app_servers {
                table.push(vec![
                    format!("  process {}", process.process),
                    format!(
                        "{} (pid {}, {} loaded, {} lanes, restarts {}, recycles {})",
                        d(process.state),
                        od(&process.pid),
                        process.loaded_threads,
                        process.lanes,
                        process.restarts,
                        process.recycles
                    ),
                ]);
            }
        }
        table.push(vec![
            "lanes".into(),
            format!(
                "{} total: {} idle, {} busy, {} retrying, {} waiting approval, {} error",
                lanes.total,
                lanes.idle,
                lanes.busy,
                lanes.retrying,
                lanes.waiting_approval,
                lanes.error
            ),
        ]);
        rows(table)
    }
}

impl Render for DaemonLogOutput {
    fn human(&self) -> String {
        if self.entries.is_empty() {
            return "the action log is empty".into();
        }
        let body = self
            .entries
            .iter()
            .map(|entry| {
                let outcome = match &entry.error_code {
                    None => d(entry.outcome),
                    Some(code) => format!("error ({})", e(code)),
                };
                vec![
                    e(&entry.at),
                    e(&entry.op),
                    opt(&entry.lane),
                    outcome,
                    opt(&entry.detail),
                ]
            })
            .collect();
        headed(&["AT", "OP", "LANE", "OUTCOME", "DETAIL"], body)
    }
}

impl Render for DoctorOutput {
    /// `doctor` exits 1 when a check fails.
    const EXIT: ExitStatus<Self> = ExitStatus::FromOutput(|doctor| {
        if doctor.status == CheckStatus::Fail {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    });

    fn human(&self) -> String {
        let mut lines = Vec::new();
        for check in &self.checks {
            lines.push(format!(
                "{:<5} {:<18} {}",
                d(check.status),
                e(&check.name),
                e(&check.summary)
            ));
            if check.status != CheckStatus::Ok
                && let Some(hint) = &check.hint
            {
                lines.push(format!("{:<24} hint: {}", "", e(hint)));
            }
        }
        lines.push(format!("doctor: {}", d(self.status)));
        lines.join("\n")
    }
}

impl Render for RegistryMigrateOutput {
    fn human(&self) -> String {
        let path = e(&self.path);
        match self.status {
            RegistryMigrateOutputStatus::Created => {
                format!("created {path} at schema {}", self.to_version)
            }
            RegistryMigrateOutputStatus::Migrated => format!(
                "migrated {path} from schema {} to {} (backup {})",
                od(&self.from_version),
                self.to_version,
                opt(&self.backup)
            ),
            RegistryMigrateOutputStatus::UpToDate => {
                format!("{path} is up to date (schema {})", self.to_version)
            }
        }
    }
}

impl Render for ModelsOutput {
    fn human(&self) -> String {
        if self.catalog_state == ModelsOutputCatalogState::Empty {
            return format!("no model catalog yet\nhint: {}", opt(&self.hint));
        }
        let body = self
            .models
            .iter()
            .map(|m| {
                let id = if m.is_default {
                    format!("{} *", e(&m.id))
                } else {
                    e(&m.id)
                };
                let tiers = m
                    .service_tiers
                    .iter()
                    .map(|t| {
                        let alias = m.aliases.iter().find(|(_, id)| **id == t.id);
                        match alias {
                            Some((alias, _)) => format!("{} ({})", e(&t.id), e(alias)),
                            None => e(&t.id),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                vec![
                    id,
                    e(&m.display_name),
                    format!("{} ({})", list(&m.efforts), opt(&m.default_effort)),
                    list(&m.input_modalities),
                    tiers,
                ]
            })
            .collect();
        format!(
            "{}\ndefault model: {} (* = catalog default); {} catalog fetched {}",
            headed(
                &[
                    "MODEL",
                    "NAME",
                    "EFFORTS (DEFAULT)",
                    "INPUT",
                    "SERVICE TIERS"
                ],
                body
            ),
            opt(&self.default_model),
            d(self.source),
            opt(&self.fetched_at)
        )
    }
}

fn lane_line(lane: &Lane) -> String {
    let title = lane.title.as_deref().map_or_else(|| "(untitled)".into(), e);
    let handle = lane
        .handle
        .as_deref()
        .map(|h| format!(" @{}", e(h)))
        .unwrap_or_default();
    format!("{} {title}{handle} [{}]", e(&lane.ref_), d(lane.status))
}

fn turn_line(turn: &Option<LatestTurn>) -> String {
    let Some(turn) = turn else {
        return "no turn yet".into();
    };
    let mut line = format!("{} {}", e(&turn.id), d(turn.status));
    if let Some(ms) = turn.duration_ms {
        line.push_str(&format!(" in {:.1} s", ms as f64 / 1000.0));
    }
    if let Some(error) = &turn.error {
        line.push_str(&format!(": {}", e(error)));
    }
    line
}

/// The `warnings` of a write, one `warning: ...` line each.
fn warnings(warnings: &[String]) -> Vec<String> {
    warnings
        .iter()
        .map(|w| format!("warning: {}", e(w)))
        .collect()
}

impl Render for NewOutput {
    fn human(&self) -> String {
        let Some(lane) = &self.lane else {
            return match &self.plan {
                Some(plan) => launch::plan(plan),
                None => "nothing was created".to_owned(),
            };
        };
        let mut lines = vec![
            format!("created lane {}", lane_line(lane)),
            format!("thread {}", e(&lane.id)),
        ];
        if let Some(tree) = &lane.worktree {
            lines.push(format!(
                "worktree {} on branch {} (of {})",
                e(&tree.path),
                e(&tree.branch),
                e(&tree.repo)
            ));
        }
        if self.goal_set {
            lines.push("goal set: Codex works on it until it is complete".into());
        }
        match self.message_accepted {
            Some(true) => lines.push(format!(
                "message accepted (turn {}); follow it with `dispatch get {1}` or `dispatch watch {1}`",
                opt(&self.turn_id),
                e(&lane.ref_),
            )),
            Some(false) => lines.push("the first message was not accepted".into()),
            None => {}
        }
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

impl Render for GetOutput {
    fn human(&self) -> String {
        let l = &self.lane;
        let writable = if l.writable {
            format!("{}, writable", d(l.ownership))
        } else {
            format!(
                "{}, read-only: {}",
                d(l.ownership),
                opt(&l.write_locked_reason)
            )
        };
        let mut table = vec![
            vec!["lane".into(), lane_line(l)],
            vec!["thread".into(), e(&l.id)],
            vec!["ownership".into(), writable],
            vec!["cwd".into(), opt(&l.cwd)],
            vec![
                "model".into(),
                l.model.as_deref().map_or_else(|| "Codex default".into(), e),
            ],
            vec!["latest turn".into(), turn_line(&l.latest_turn)],
        ];
        if let Some(retry) = &l.retry {
            table.push(vec![
                "retrying".into(),
                format!(
                    "attempt {}, last error at {}: {}",
                    retry.attempts,
                    opt(&retry.at),
                    opt(&retry.last_error)
                ),
            ]);
        }
        if let Some(since) = &l.stalled_since {
            table.push(vec![
                "stalled".into(),
                format!("no App Server event since {}", e(since)),
            ]);
        }
        if let Some(hint) = &l.hint {
            table.push(vec!["hint".into(), e(hint)]);
        }
        if let Some(goal) = &l.goal {
            table.push(vec![
                "goal".into(),
                format!("{} ({})", e(&goal.objective), e(&goal.status)),
            ]);
        }
        if let Some(tree) = &l.worktree {
            table.push(vec![
                "worktree".into(),
                format!(
                    "{} on branch {} (of {})",
                    e(&tree.path),
                    e(&tree.branch),
                    e(&tree.repo)
                ),
            ]);
        }
        if let Some(parent) = &self.parent {
            table.push(vec!["parent".into(), format!("lane {}", e(&parent.ref_))]);
        }
        if !self.children.is_empty() {
            let children: Vec<String> = self.children.iter().map(|c| e(&c.ref_)).collect();
            table.push(vec!["children".into(), children.join(", ")]);
        }
        if let Some(c) = &self.compaction {
            let state = match &c.completed_at {
                Some(at) => format!("compacted at {}", e(at)),
                None => format!("asked for at {}, not finished", opt(&c.requested_at)),
            };
            table.push(vec!["compaction".into(), state]);
        }
        let c = &self.counts;
        table.push(vec![
            "counts".into(),
            format!(
                "{} turns, {} items, {} events, {} errors",
                c.turns, c.items, c.events, c.errors
            ),
        ]);
        let mut out = rows(table);
        let running_turn = l
            .latest_turn
            .as_ref()
            .filter(|t| t.status == TurnStatus::InProgress)
            .map(|t| t.id.as_str());
        for error in self.errors.iter().take(5) {
            // "retrying" only while the turn it was said of still runs.
            let retry = match (error.will_retry, error.turn_id.as_deref()) {
                (true, Some(turn)) if Some(turn) == running_turn => " (Codex is retrying)",
                (true, _) => " (Codex retried; that turn has ended)",
                (false, _) => "",
            };
            out.push_str(&format!(
                "\nerror {}: {}{retry}",
                e(&error.at),
                e(&error.message)
            ));
        }
        out
    }
}

/// The lines of `list --unmanaged`.
fn unmanaged_threads(threads: &[UnmanagedThread]) -> String {
    if threads.is_empty() {
        return "no unmanaged threads".into();
    }
    let body = threads
        .iter()
        .map(|t| {
            vec![
                e(&t.id),
                t.title
                    .as_deref()
                    .map_or_else(|| e(&first_line(&t.preview, 40)), e),
                e(&t.cwd),
                e(&t.updated_at),
            ]
        })
        .collect();
    headed(&["THREAD", "TITLE", "CWD", "UPDATED"], body)
}

/// The first line of `text`, at most `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// The line telling how to get the next page.
fn next_page(cursor: &Option<String>) -> String {
    cursor
        .as_deref()
        .map_or_else(String::new, |c| format!("\nmore: add `--cursor {}`", e(c)))
}

impl Render for ListOutput {
    /// Fails only when a lane kept as its encoded text does not read back (no decoded answer
    /// holds one).
    fn try_human(&self) -> Result<String, DispatchError> {
        if !self.threads.is_empty() || (self.lanes.is_empty() && self.next_cursor.is_some()) {
            return Ok(unmanaged_threads(&self.threads) + &next_page(&self.next_cursor));
        }
        if self.lanes.is_empty() {
            return Ok("no lanes".into());
        }
        // A decoded answer holds typed lanes: this borrows them.
        let shown = read_back(&self.lanes, "a lane of `list`")?;
        if !self.tree.is_empty() {
            let lanes: std::collections::HashMap<&str, &Lane> =
                shown.iter().map(|l| (l.ref_.as_str(), &**l)).collect();
            let body = self
                .tree
                .iter()
                .map(|node| {
                    let indent = "  ".repeat(usize::try_from(node.depth).unwrap_or(0));
                    let lane = lanes.get(node.ref_.as_str());
                    vec![
                        format!("{indent}{}", e(&node.ref_)),
                        lane.map_or_else(|| "-".into(), |l| d(l.status)),
                        lane.map_or_else(|| "-".into(), |l| opt(&l.title)),
                    ]
                })
                .collect();
            return Ok(headed(&["REF", "STATUS", "TITLE"], body) + &next_page(&self.next_cursor));
        }
        let body = shown
            .iter()
            .map(|l| {
                vec![
                    e(&l.ref_),
                    d(l.status),
                    opt(&l.title),
                    l.handle
                        .as_deref()
                        .map_or_else(|| "-".into(), |h| format!("@{}", e(h))),
                    d(l.ownership),
                    l.latest_turn
                        .as_ref()
                        .map_or_else(|| "-".into(), |t| d(t.status)),
                    e(&l.updated_at),
                ]
            })
            .collect();
        Ok(headed(
            &[
                "REF",
                "STATUS",
                "TITLE",
                "HANDLE",
                "OWNER",
                "LATEST TURN",
                "UPDATED",
            ],
            body,
        ) + &next_page(&self.next_cursor))
    }
}

/// A duration in milliseconds, shortly.
fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The git column of a `history` row.
fn git_facts(git: &Option<GitFacts>) -> String {
    match git {
        None => "-".into(),
        Some(g) => match (&g.skipped, &g.branch, g.changed_files) {
            (Some(why), _, _) => format!("({})", e(why)),
            (None, branch, Some(0)) => format!("{} clean", opt(branch)),
            (None, branch, Some(n)) => format!("{} {n} changed", opt(branch)),
            (None, branch, None) => opt(branch),
        },
    }
}

/// The views of `history`, below the refresh line.
fn history_body(this: &HistoryOutput) -> String {
    match this.view {
        HistoryOutputView::Overview => {
            if this.lanes.is_empty() {
                return "no lanes".into();
            }
            let body = this
                .lanes
                .iter()
                .map(|l| {
                    vec![
                        e(&l.ref_),
                        opt(&l.title),
                        d(l.turns),
                        d(l.items),
                        d(l.messages),
                        d(l.tool_calls),
                        d(l.files_changed),
                        od(&l.tokens_used),
                        e(&l.last_activity),
                        git_facts(&l.git),
                    ]
                })
                .collect();
            headed(
                &[
                    "REF",
                    "TITLE",
                    "TURNS",
                    "ITEMS",
                    "MSGS",
                    "TOOLS",
                    "FILES",
                    "TOKENS",
                    "LAST ACTIVITY",
                    "GIT",
                ],
                body,
            )
        }
        HistoryOutputView::Turns => {
            if this.turns.is_empty() {
                return "no turns".into();
            }
            let body = this
                .turns
                .iter()
                .map(|t| {
                    vec![
                        e(&t.id),
                        d(t.status),
                        t.started_at.as_ref().map_or_else(|| "-".into(), |at| e(at)),
                        duration(t.duration_ms),
                        d(t.items),
                        d(t.tool_calls),
                        opt(&t.error),
                    ]
                })
                .collect();
            headed(
                &[
                    "TURN", "STATUS", "STARTED", "TOOK", "ITEMS", "TOOLS", "ERROR",
                ],
                body,
            )
        }
        HistoryOutputView::Tools => {
            if this.tools.is_empty() {
                return "no tool calls".into();
            }
            let body = this
                .tools
                .iter()
                .map(|t| vec![e(&t.tool), d(t.calls), d(t.errored), e(&t.last_call)])
                .collect();
            headed(&["TOOL", "CALLS", "ERRORED", "LAST CALL"], body)
        }
        HistoryOutputView::Files => {
            if this.files.is_empty() {
                return "no files changed".into();
            }
            let body = this
                .files
                .iter()
                .map(|f| vec![e(&f.path), d(f.changes), e(&f.last_change)])
                .collect();
            headed(&["FILE", "CHANGES", "LAST CHANGE"], body)
        }
    }
}

impl Render for HistoryOutput {
    fn human(&self) -> String {
        let body = history_body(self);
        match &self.refresh {
            Some(refresh) => format!("{}\n{body}", e(&refresh.detail)),
            None => body,
        }
    }
}

impl Render for TailOutput {
    fn human(&self) -> String {
        if self.items.is_empty() {
            return format!("lane {} has no items yet", e(&self.lane.ref_));
        }
        self.items
            .iter()
            .map(|item| {
                let body = item
                    .text
                    .as_deref()
                    .map_or_else(|| "-".into(), |t| block(t, "    "));
                format!("[{}] {body}", e(&item.type_))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Render for SendOutput {
    fn human(&self) -> String {
        let lane = e(&self.lane.ref_);
        let turn = opt(&self.turn_id);
        let first = if self.repeated {
            format!(
                "already delivered: receipt {} ({}), nothing sent again",
                e(&self.receipt),
                d(self.state)
            )
        } else if self.steered {
            format!("message added to the running turn {turn} of lane {lane}")
        } else {
            match self.state {
                DeliveryState::Queued => {
                    format!(
                        "message queued for lane {lane}: it starts a turn when the lane is idle"
                    )
                }
                DeliveryState::Completed => format!("message added to lane {lane}'s history"),
                _ => format!("message accepted on lane {lane}, turn {turn}"),
            }
        };
        let first = match &self.sender {
            Some(sender) => format!("{first} (signed by lane {})", e(sender)),
            None => first,
        };
        let mut lines = vec![
            first,
            format!(
                "receipt {0}: follow it with `dispatch delivery get {0}`, the lane with `dispatch get {lane}`",
                e(&self.receipt)
            ),
        ];
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

fn receipt_lines(r: &Receipt) -> Vec<String> {
    let mut lines = vec![
        format!(
            "receipt {} to lane {}: {} ({}), from {}",
            e(&r.receipt),
            e(&r.lane.ref_),
            d(r.state),
            d(r.mode),
            e(&r.source)
        ),
        format!(
            "turn {}, recorded {}, changed {}",
            opt(&r.turn_id),
            e(&r.created_at),
            e(&r.updated_at)
        ),
    ];
    for image in &r.images {
        lines.push(format!(
            "image {} ({} bytes, sha256 {})",
            e(&image.path),
            image.size,
            e(&image.sha256)
        ));
    }
    if let Some(error) = &r.error {
        lines.push(format!("note: {}", e(error)));
    }
    if r.state == DeliveryState::Ambiguous {
        lines.push(format!(
            "checked {} times; `dispatch delivery reconcile {}` looks again (never resends)",
            r.checks,
            e(&r.receipt)
        ));
    }
    lines
}

impl Render for DeliveryGetOutput {
    fn human(&self) -> String {
        receipt_lines(&self.0).join("\n")
    }
}

impl Render for DeliveryReconcileOutput {
    fn human(&self) -> String {
        let mut lines = vec![if self.released {
            "not found in the thread: released, the lane's queue goes on".to_owned()
        } else if self.found {
            "found in the thread".to_owned()
        } else if self.receipt.state == DeliveryState::Ambiguous {
            "not found in the thread (yet); it stays held and is never resent".to_owned()
        } else {
            "nothing to reconcile: the receipt is not ambiguous".to_owned()
        }];
        lines.extend(receipt_lines(&self.receipt));
        lines.join("\n")
    }
}

impl Render for StopOutput {
    fn human(&self) -> String {
        let lane = e(&self.lane.ref_);
        match (&self.turn_id, self.interrupted) {
            (Some(turn), true) => format!("interrupting turn {} of lane {lane}", e(turn)),
            _ => format!("lane {lane} has no running turn"),
        }
    }
}

fn goal(lane: &LaneRef, goal: &Option<Goal>) -> String {
    match goal {
        Some(g) => format!(
            "lane {} goal: {} ({})",
            e(&lane.ref_),
            e(&g.objective),
            e(&g.status)
        ),
        None => format!("lane {} has no goal", e(&lane.ref_)),
    }
}

impl Render for GoalSetOutput {
    fn human(&self) -> String {
        goal(&self.lane, &self.goal)
    }
}

impl Render for GoalGetOutput {
    fn human(&self) -> String {
        goal(&self.lane, &self.goal)
    }
}

impl Render for GoalClearOutput {
    fn human(&self) -> String {
        if self.cleared {
            format!("goal of lane {} cleared", e(&self.lane.ref_))
        } else {
            format!("lane {} had no goal", e(&self.lane.ref_))
        }
    }
}

impl Render for RequestsOutput {
    fn human(&self) -> String {
        if self.requests.is_empty() {
            return "no pending requests".into();
        }
        let body = self
            .requests
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    e(&r.lane.ref_),
                    e(&r.kind),
                    e(&r.summary),
                    list(&r.available_decisions),
                ]
            })
            .collect();
        format!(
            "{}\nanswer with `dispatch respond <id> accept|decline`",
            headed(&["ID", "LANE", "KIND", "ASKS", "DECISIONS"], body)
        )
    }
}

impl Render for RespondOutput {
    fn human(&self) -> String {
        format!(
            "request {} answered `{}` (lane {})",
            self.request_id,
            e(&self.decision),
            e(&self.lane.ref_)
        )
    }
}

/// One streamed `watch` event as a human line.
pub fn watch_event(event: &Value) -> String {
    let field = |name: &str| match &event[name] {
        Value::Null => "-".to_owned(),
        Value::String(s) => e(s),
        other => e(&other.to_string()),
    };
    let summary = event["summary"]
        .as_str()
        .map(|s| format!(" {}", e(s)))
        .unwrap_or_default();
    format!("{} {}{summary}", field("at"), field("method"))
}

/// The closing line of a human `watch`: why it ended, how many events it printed, and the
/// cursor to continue from with `--after`.
pub fn watch_end(summary: &Value) -> String {
    let field = |name: &str| match &summary[name] {
        Value::String(s) => e(s),
        other => e(&other.to_string()),
    };
    let (ended, events) = (field("ended"), field("events"));
    match &summary["cursor"] {
        Value::Null => format!("watch ended ({ended}) after {events} events"),
        _ => {
            let cursor = field("cursor");
            format!(
                "watch ended ({ended}) after {events} events at cursor {cursor}; continue with --after {cursor}"
            )
        }
    }
}

impl Render for WatchOutput {}

impl Render for AttachOutput {
    fn human(&self) -> String {
        let verb = if self.already_attached {
            "already attached as"
        } else {
            "attached as"
        };
        format!(
            "{verb} lane {} (observe-only unless [policy] allow_attached_writes)",
            lane_line(&self.lane)
        )
    }
}

impl Render for SyncOutput {
    fn human(&self) -> String {
        format!(
            "synced lane {}: {} turns, {} new items, {} updated",
            e(&self.lane.ref_),
            self.turns,
            self.items_added,
            self.items_updated
        )
    }
}

/// `lane <ref>`, or `thread <id>` for a thread that is no lane.
fn who(lane_ref: &Option<String>, id: &str) -> String {
    match lane_ref {
        Some(r) => format!("lane {}", e(r)),
        None => format!("thread {}", e(id)),
    }
}

impl Render for RenameOutput {
    fn human(&self) -> String {
        format!(
            "{} is now titled {}",
            who(&self.ref_, &self.id),
            opt(&self.title)
        )
    }
}

impl Render for ArchiveOutput {
    fn human(&self) -> String {
        format!("{} archived", who(&self.ref_, &self.id))
    }
}

impl Render for RestoreOutput {
    fn human(&self) -> String {
        format!("{} restored", who(&self.ref_, &self.id))
    }
}

impl Render for SearchOutput {
    fn human(&self) -> String {
        if self.hits.is_empty() {
            return "no matches".into();
        }
        let body = self
            .hits
            .iter()
            .map(|h| {
                vec![
                    h.ref_.as_deref().map_or_else(|| e(&h.id), e),
                    d(h.scope),
                    opt(&h.title),
                    opt(&h.snippet),
                ]
            })
            .collect();
        headed(&["REF", "SCOPE", "TITLE", "MATCH"], body)
    }
}

impl Render for AssetsOutput {
    fn human(&self) -> String {
        let mut lines: Vec<String> = self
            .files
            .iter()
            .map(|f| match &self.out {
                Some(_) => format!("{:<11} {}", d(f.status), e(&f.path)),
                None => format!("{} ({} bytes)", e(&f.path), f.bytes),
            })
            .collect();
        lines.push(match &self.out {
            Some(dir) => format!(
                "dispatch {} agent assets are in {}",
                e(&self.version),
                e(dir)
            ),
            None => format!(
                "dispatch {} agent assets; `dispatch assets --out DIR` writes them",
                e(&self.version)
            ),
        });
        lines.join("\n")
    }
}

/// One trigger in a few lines: name, schedule, lane, state, next and last fire.
fn trigger_lines(t: &Trigger) -> String {
    let state = if t.paused { "paused" } else { "active" };
    let mut out = format!(
        "trigger {} ({}) {state}: {} to lane {}, mode {}",
        e(&t.name),
        t.id,
        e(&t.schedule),
        e(&t.lane.ref_),
        d(t.mode),
    );
    let _infallible = write!(out, "\n  next fire: {}", opt(&t.next_fire_at));
    if let Some(at) = &t.last_fired_at {
        let _infallible = write!(
            out,
            "\n  last fire: {} ({} so far): {}",
            e(at),
            t.fires,
            opt(&t.last_outcome)
        );
    }
    out
}

impl Render for TriggerAddOutput {
    fn human(&self) -> String {
        format!("added {}", trigger_lines(&self.trigger))
    }
}

impl Render for TriggerListOutput {
    fn human(&self) -> String {
        if self.triggers.is_empty() {
            return "no triggers".into();
        }
        let body = self
            .triggers
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    e(&t.name),
                    e(&t.lane.ref_),
                    e(&t.schedule),
                    d(t.mode),
                    if t.paused { "paused" } else { "active" }.to_owned(),
                    opt(&t.next_fire_at),
                    opt(&t.last_fired_at),
                    t.fires.to_string(),
                    opt(&t.last_outcome),
                ]
            })
            .collect();
        headed(
            &[
                "ID",
                "NAME",
                "LANE",
                "SCHEDULE",
                "MODE",
                "STATE",
                "NEXT",
                "LAST",
                "FIRES",
                "LAST OUTCOME",
            ],
            body,
        )
    }
}

impl Render for TriggerRmOutput {
    fn human(&self) -> String {
        format!(
            "removed trigger {} ({})",
            e(&self.trigger.name),
            self.trigger.id
        )
    }
}

fn inbox_entry(m: &InboxEntry) -> Vec<String> {
    vec![
        m.id.to_string(),
        m.to.as_deref().map_or_else(|| "operator".to_owned(), e),
        d(m.kind),
        opt(&m.about),
        e(&m.subject),
    ]
}

impl Render for InboxListOutput {
    fn human(&self) -> String {
        if self.messages.is_empty() {
            return "no messages".into();
        }
        let body = self.messages.iter().map(inbox_entry).collect();
        format!(
            "{}\nread one with `dispatch inbox read <id>`, acknowledge with `dispatch inbox ack <id>`",
            headed(&["ID", "TO", "KIND", "ABOUT", "SUBJECT"], body)
        )
    }
}

impl Render for TriggerPauseOutput {
    fn human(&self) -> String {
        trigger_lines(&self.trigger)
    }
}

impl Render for TriggerResumeOutput {
    fn human(&self) -> String {
        trigger_lines(&self.trigger)
    }
}

impl Render for InboxReadOutput {
    fn human(&self) -> String {
        let m = &self.message;
        let mut out = format!(
            "message {} to {} ({}, {}) {}\n{}",
            m.id,
            m.to.as_deref().map_or_else(|| "the operator".to_owned(), e),
            d(m.kind),
            d(m.state),
            e(&m.created_at),
            e(&m.subject),
        );
        if let Some(about) = &m.about {
            out.push_str(&format!("\nabout lane {}", e(about)));
        }
        if let Some(turn) = &m.turn_id {
            out.push_str(&format!(", turn {}", e(turn)));
        }
        out.push_str(&format!("\n\n  {}", block(&m.body, "  ")));
        out
    }
}

impl Render for InboxAckOutput {
    fn human(&self) -> String {
        let of = self
            .lane
            .as_deref()
            .map(|lane| format!(" to lane {}", e(lane)))
            .unwrap_or_default();
        match self.ids.as_slice() {
            [] => format!("nothing to acknowledge: no pending message{of}"),
            [id] => format!("acknowledged message {id}{of}"),
            ids => format!(
                "acknowledged {} messages{of} ({})",
                ids.len(),
                ids.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn subscription_row(s: &Subscription) -> Vec<String> {
    vec![
        s.id.to_string(),
        e(&s.target),
        e(&s.subscriber),
        d(s.when),
        d(s.delivery),
        s.tail.to_string(),
        if s.once { "once" } else { "every time" }.into(),
        match (s.active, s.fired) {
            (true, 0) => "listening".to_owned(),
            (true, n) => format!("fired {n}x"),
            (false, n) => format!("ended, fired {n}x"),
        },
    ]
}

const SUBSCRIPTION_HEADER: [&str; 8] = [
    "ID",
    "TARGET",
    "SUBSCRIBER",
    "WHEN",
    "DELIVERY",
    "TAIL",
    "REPEAT",
    "STATE",
];

impl Render for SubscribeOutput {
    fn human(&self) -> String {
        let s = &self.subscription;
        let verb = if self.existing {
            "already subscribed"
        } else {
            "subscribed"
        };
        let what = match s.delivery {
            SubscriptionDelivery::Turn => "an inbox message and a turn",
            SubscriptionDelivery::Inbox => "an inbox message",
        };
        format!(
            "{verb}: lane {} gets {what} when lane {} reaches `{}` ({}; subscription {})",
            e(&s.subscriber),
            e(&s.target),
            d(s.when),
            if s.once { "once" } else { "every time" },
            s.id
        )
    }
}

impl Render for SubscriptionsOutput {
    fn human(&self) -> String {
        if self.subscriptions.is_empty() {
            return "no subscriptions".into();
        }
        let body = self.subscriptions.iter().map(subscription_row).collect();
        headed(&SUBSCRIPTION_HEADER, body)
    }
}

impl Render for UnsubscribeOutput {
    fn human(&self) -> String {
        let s = &self.subscription;
        let what = format!(
            "subscription {} (lane {} to `{}` of lane {})",
            s.id,
            e(&s.subscriber),
            d(s.when),
            e(&s.target)
        );
        if self.was_active {
            format!("{what} ended; it fired {} times", s.fired)
        } else {
            format!("{what} had already ended")
        }
    }
}

impl Render for WaitOutput {
    fn human(&self) -> String {
        let mut lines = Vec::new();
        for lane in &self.lanes {
            let mark = if lane.reached { "reached" } else { "pending" };
            lines.push(format!(
                "{} [{}] {mark}: {}",
                e(&lane.lane.ref_),
                d(lane.status),
                turn_line(&lane.latest_turn)
            ));
            if let Some(message) = &lane.last_agent_message {
                lines.push(format!("  {}", block(message, "  ")));
            }
        }
        if self.timed_out {
            lines.push(format!("timed out; still pending: {}", list(&self.pending)));
        }
        lines.join("\n")
    }
}

impl Render for SchemaOutput {}

/// An output of an operation this CLI does not know: shown as JSON.
impl Render for Value {}

mod launch;
mod read_back;
mod thread_ops;

pub use read_back::read_back;
