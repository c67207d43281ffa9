//! Human output of the thread operations (`fork`, `revert`, `compact`, `review`, `delete`) and
//! of the account operations (`usage`, `permissions`), and `worktree remove`.

use dispatch_contract::types::*;

use super::{Render, d, e, headed, lane_line, od, opt, rows, warnings};

impl Render for ForkOutput {
    fn human(&self) -> String {
        let lane = &self.lane;
        let mut lines = vec![
            format!(
                "forked lane {} into {}",
                e(&self.parent.ref_),
                lane_line(lane)
            ),
            format!(
                "thread {}, with {} turns of history; files are not copied",
                e(&lane.id),
                self.turns
            ),
        ];
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

impl Render for RevertOutput {
    fn human(&self) -> String {
        let mut lines = vec![
            format!(
                "lane {}: reverted {} turns ({}), {} left",
                e(&self.lane.ref_),
                self.reverted.len(),
                self.reverted
                    .iter()
                    .map(|t| e(t))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.turns_left
            ),
            "only the conversation was rewound: files in the working directory were not reverted"
                .to_owned(),
        ];
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

impl Render for CompactOutput {
    fn human(&self) -> String {
        let mut lines = vec![format!(
            "lane {}: context compaction started at {}; `dispatch get {}` shows when it finished",
            e(&self.lane.ref_),
            e(&self.requested_at),
            e(&self.lane.ref_),
        )];
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

impl Render for ReviewOutput {
    fn human(&self) -> String {
        let mut lines = vec![format!(
            "lane {}: review of {} started (turn {}); the findings appear in `dispatch tail {}`",
            e(&self.lane.ref_),
            e(&self.target),
            opt(&self.turn_id),
            e(&self.lane.ref_),
        )];
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

impl Render for DeleteOutput {
    fn human(&self) -> String {
        let mut lines = vec![match &self.ref_ {
            Some(r) => format!("lane {} and its thread {} deleted", e(r), e(&self.id)),
            None => format!("thread {} deleted", e(&self.id)),
        }];
        lines.extend(warnings(&self.warnings));
        lines.join("\n")
    }
}

impl Render for PermissionsOutput {
    fn human(&self) -> String {
        let body = self
            .profiles
            .iter()
            .map(|p| {
                vec![
                    e(&p.id),
                    if p.allowed { "allowed" } else { "not allowed" }.to_owned(),
                    opt(&p.description),
                ]
            })
            .collect();
        format!(
            "permission profiles in {}\n{}",
            opt(&self.cwd),
            headed(&["PROFILE", "HERE", "DESCRIPTION"], body)
        )
    }
}

impl Render for UsageOutput {
    fn human(&self) -> String {
        let Some(account) = &self.account else {
            return format!("signed out\n{}", opt(&self.hint));
        };
        let mut table = vec![
            vec!["account".into(), e(&account.type_)],
            vec!["plan".into(), opt(&account.plan)],
            vec!["e-mail".into(), opt(&account.email)],
        ];
        for w in &self.rate_limits {
            table.push(vec![
                format!("{} limit", e(&w.window)),
                format!(
                    "{}% used of {} min, resets {} ({})",
                    w.used_percent,
                    od(&w.window_minutes),
                    opt(&w.resets_at),
                    opt(&w.limit)
                ),
            ]);
        }
        if self.rate_limits.is_empty() {
            table.push(vec!["rate limits".into(), "unknown".into()]);
        }
        if let Some(usage) = &self.token_usage {
            for (key, value) in usage {
                table.push(vec![e(&key.replace('_', " ")), d(value)]);
            }
        }
        rows(table)
    }
}

impl Render for WorktreeRemoveOutput {
    fn human(&self) -> String {
        let forced = if self.forced {
            ", its changes discarded"
        } else {
            ""
        };
        format!(
            "lane {}: removed worktree {}{forced}; branch {} stays",
            e(&self.lane),
            e(&self.path),
            e(&self.branch)
        )
    }
}
