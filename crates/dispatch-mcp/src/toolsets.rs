//! Which toolsets `dispatch mcp` serves (ADR 0016): the defaults of `contract/mcp.json`, or a
//! list of names where `all` means every toolset and `default` the defaults. A tool outside
//! them is not listed, and a call to it answers which toolset to enable.

use std::collections::BTreeSet;

use dispatch_contract::DispatchError;

use crate::descriptor::{ToolSpec, Toolset};
use crate::generated::tools::{TOOLS, TOOLSETS};

/// The toolsets a server serves, in `contract/mcp.json`'s order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    names: BTreeSet<&'static str>,
}

impl Default for Enabled {
    fn default() -> Self {
        Enabled::defaults()
    }
}

impl Enabled {
    /// The toolsets `contract/mcp.json` marks `default`.
    pub fn defaults() -> Enabled {
        Enabled {
            names: TOOLSETS
                .iter()
                .filter(|set| set.default)
                .map(|set| set.name)
                .collect(),
        }
    }

    /// Every toolset: every MCP operation is a tool.
    pub fn all() -> Enabled {
        Enabled {
            names: TOOLSETS.iter().map(|set| set.name).collect(),
        }
    }

    /// The toolsets `names` chooses: toolset names, `all` and `default`, each trimmed
    /// (`--toolsets lanes,threads`, `[mcp] toolsets = ["default", "threads"]`). An unknown
    /// name, or no name at all, is `invalid_input` naming the valid ones.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Enabled, DispatchError> {
        let mut enabled = BTreeSet::new();
        for name in names.iter().map(|n| n.as_ref().trim()) {
            match name {
                "all" => enabled.extend(Enabled::all().names),
                "default" => enabled.extend(Enabled::defaults().names),
                _ => match TOOLSETS.iter().find(|set| set.name == name) {
                    Some(set) => {
                        enabled.insert(set.name);
                    }
                    None => {
                        return Err(DispatchError::invalid_input(format!(
                            "unknown MCP toolset `{name}`"
                        ))
                        .with_hint(choices_hint())
                        .with_details(serde_json::json!({
                            "toolset": name,
                            "toolsets": valid_names(),
                        })));
                    }
                },
            }
        }
        if enabled.is_empty() {
            return Err(
                DispatchError::invalid_input("no MCP toolset chosen").with_hint(choices_hint())
            );
        }
        Ok(Enabled { names: enabled })
    }

    /// Whether the toolset named `name` is served.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The served toolsets, in `contract/mcp.json`'s order.
    pub fn toolsets(&self) -> impl Iterator<Item = &'static Toolset> + '_ {
        TOOLSETS.iter().filter(|set| self.contains(set.name))
    }

    /// The tools of the served toolsets, in operation id order.
    pub fn tools(&self) -> impl Iterator<Item = &'static ToolSpec> + '_ {
        TOOLS.iter().filter(|tool| self.contains(tool.toolset))
    }
}

/// Every name `parse` takes: the toolsets, then `all` and `default`.
fn valid_names() -> Vec<&'static str> {
    TOOLSETS
        .iter()
        .map(|set| set.name)
        .chain(["all", "default"])
        .collect()
}

/// The hint of a bad choice (shown where the choice is made: the CLI or `config.toml`).
fn choices_hint() -> String {
    let defaults: Vec<&str> = Enabled::defaults().toolsets().map(|set| set.name).collect();
    format!(
        "the toolsets are {} (or all, or default: {}); name them comma-separated with --toolsets or in `[mcp] toolsets` of config.toml",
        TOOLSETS
            .iter()
            .map(|set| set.name)
            .collect::<Vec<_>>()
            .join(", "),
        defaults.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_serves_only_default_toolsets_and_all_serves_every_tool() {
        let defaults = Enabled::defaults();
        assert!(defaults.tools().all(|tool| {
            TOOLSETS
                .iter()
                .any(|set| set.name == tool.toolset && set.default)
        }));
        assert!(defaults.tools().count() < TOOLS.len());
        assert_eq!(Enabled::all().tools().count(), TOOLS.len());
        assert_eq!(Enabled::parse(&["all"]).expect("all"), Enabled::all());
        assert_eq!(Enabled::parse(&[" default "]).expect("default"), defaults);
    }

    #[test]
    fn a_list_adds_up_and_unknown_or_empty_choices_are_refused() {
        let chosen = Enabled::parse(&["default", "threads"]).expect("known");
        assert!(chosen.contains("threads") && chosen.contains("lanes"));
        assert!(!chosen.contains("account"));
        let err = Enabled::parse(&["lanes", "thread"]).expect_err("unknown");
        assert_eq!(err.code.as_str(), "invalid_input");
        assert!(err.message.contains("`thread`"), "{}", err.message);
        let empty: [&str; 0] = [];
        assert!(Enabled::parse(&empty).is_err());
        assert!(Enabled::parse(&[""]).is_err());
    }
}
