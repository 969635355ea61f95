//! Applying a [`Rendered`] to the kernel: `ipset restore` for new sets, one
//! `iptables-restore --noflush` transaction for our chains and hook jumps, then `ipset destroy`
//! for sets nothing uses any more; and removing all of it again.
//!
//! The transaction text is computed by pure functions ([`parse_save`], [`plan`],
//! [`cleanup_plan`]) from what `iptables-save` shows, so it is unit-tested without root.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
};

use tracing::debug;

use super::{
    Backend, IptablesError,
    render::{PREFIX, Rendered, ipset_script, write_chain_rules},
};

/// Built-in chains of the filter table felix hooks into.
pub const BUILTINS: [&str; 3] = ["INPUT", "FORWARD", "OUTPUT"];

/// The filter table as `iptables-save` shows it: our chains with their rule counts, and the
/// rules of every other chain (built-in or someone else's), as rule specifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub ours: BTreeMap<String, usize>,
    pub others: BTreeMap<String, Vec<String>>,
}

/// Whether a rule specification jumps (or goes) to one of our chains; the chain if so.
pub(super) fn felix_target(spec: &str) -> Option<&str> {
    let mut words = spec.split_whitespace();
    while let Some(w) = words.next() {
        if matches!(w, "-j" | "-g" | "--jump" | "--goto") {
            return words.next().filter(|t| t.starts_with(PREFIX));
        }
    }
    None
}

/// Reads the `*filter` part of `iptables-save` output (other tables are ignored).
pub fn parse_save(text: &str) -> Saved {
    parse_table_save(text, "filter")
}

/// Reads the `*<table>` part of `iptables-save` output (other tables are ignored).
pub fn parse_table_save(text: &str, table: &str) -> Saved {
    let mut saved = Saved::default();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            in_table = name == table;
            continue;
        }
        if line == "COMMIT" {
            in_table = false;
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if name.starts_with(PREFIX) {
                saved.ours.entry(name.to_string()).or_insert(0);
            } else {
                saved.others.entry(name.to_string()).or_default();
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            if chain.starts_with(PREFIX) {
                *saved.ours.entry(chain.to_string()).or_insert(0) += 1;
            } else {
                saved
                    .others
                    .entry(chain.to_string())
                    .or_default()
                    .push(spec.to_string());
            }
        }
    }
    saved
}

/// One `iptables-restore` transaction and what it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `None` when the table already is as wanted.
    pub script: Option<String>,
    /// Chains (re)written.
    pub written: usize,
    /// Chains left as they are (same rules as last applied, still there).
    pub unchanged: usize,
    /// Our chains that are no longer wanted and are deleted.
    pub deleted: usize,
    /// Jumps to our chains deleted or inserted in other chains.
    pub hook_changes: usize,
}

/// The transaction that brings `saved` to `rendered`. A chain is rewritten unless `previous`
/// (what the last successful apply wrote) has the same rules for it and the table still has it
/// with that many rules; chains of ours that `rendered` lacks are flushed and deleted; each hook
/// jump is made the first rule of its built-in chain, exactly once.
pub fn plan(rendered: &Rendered, saved: &Saved, previous: Option<&Rendered>) -> Plan {
    let mut p = Plan::default();
    let mut decls = String::new();
    let mut body = String::new();
    let mut tail = String::new();
    let wanted: BTreeSet<&str> = rendered.chains.iter().map(|c| c.name.as_str()).collect();
    for chain in &rendered.chains {
        let same = previous
            .and_then(|prev| prev.chain(&chain.name))
            .is_some_and(|prev| prev.rules == chain.rules)
            && saved.ours.get(&chain.name) == Some(&chain.rules.len());
        if same {
            p.unchanged += 1;
            continue;
        }
        p.written += 1;
        let _ = writeln!(decls, ":{} - [0:0]", chain.name);
        write_chain_rules(&mut body, chain);
    }
    let stale: Vec<&String> = saved
        .ours
        .keys()
        .filter(|name| !wanted.contains(name.as_str()))
        .collect();
    for name in &stale {
        let _ = writeln!(decls, ":{name} - [0:0]");
        let _ = writeln!(tail, "-X {name}");
        p.deleted += 1;
    }
    for (chain, specs) in &saved.others {
        let hook = rendered
            .hooks
            .iter()
            .find(|h| h.builtin == chain.as_str())
            .map(|h| format!("-j {}", h.chain));
        let jumps: Vec<&String> = specs.iter().filter(|s| felix_target(s).is_some()).collect();
        let in_place = hook
            .as_ref()
            .is_some_and(|h| jumps.len() == 1 && specs.first() == Some(h));
        if in_place {
            continue;
        }
        for spec in &jumps {
            // Only our hooks, and jumps to chains being deleted, are touched.
            let to_stale = felix_target(spec).is_some_and(|t| !wanted.contains(t));
            if hook.is_some() || BUILTINS.contains(&chain.as_str()) || to_stale {
                let _ = writeln!(body, "-D {chain} {spec}");
                p.hook_changes += 1;
            }
        }
        if let Some(h) = &hook {
            let _ = writeln!(body, "-I {chain} 1 {h}");
            p.hook_changes += 1;
        }
    }
    for hook in &rendered.hooks {
        if !saved.others.contains_key(hook.builtin) {
            // The table has not been created yet (nft): the restore creates the chain.
            let _ = writeln!(body, "-I {} 1 -j {}", hook.builtin, hook.chain);
            p.hook_changes += 1;
        }
    }
    if p.written + p.deleted + p.hook_changes > 0 {
        p.script = Some(format!("*filter\n{decls}{body}{tail}COMMIT\n"));
    }
    p
}

/// The transaction removing every chain of ours and every jump to them; `None` when there is
/// nothing of ours.
pub fn cleanup_plan(saved: &Saved) -> Option<String> {
    cleanup_table_plan("filter", saved)
}

/// [`cleanup_plan`] for `table` (`saved` read from it).
pub fn cleanup_table_plan(table: &str, saved: &Saved) -> Option<String> {
    let mut decls = String::new();
    let mut body = String::new();
    let mut tail = String::new();
    for (chain, specs) in &saved.others {
        for spec in specs.iter().filter(|s| felix_target(s).is_some()) {
            let _ = writeln!(body, "-D {chain} {spec}");
        }
    }
    for name in saved.ours.keys() {
        let _ = writeln!(decls, ":{name} - [0:0]");
        let _ = writeln!(tail, "-X {name}");
    }
    if decls.is_empty() && body.is_empty() {
        return None;
    }
    Some(format!("*{table}\n{decls}{body}{tail}COMMIT\n"))
}

/// Runs `program args`, feeding `input` on stdin; its stdout.
pub(super) fn run(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, IptablesError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                IptablesError::Missing {
                    program: program.to_string(),
                }
            } else {
                IptablesError::Spawn {
                    program: program.to_string(),
                    source,
                }
            }
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A program that fails early closes its stdin: its status and stderr tell why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|source| IptablesError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(IptablesError::Failed {
            program: format!("{program} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            input: input.map(failing_line_context).unwrap_or_default(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The start of a failed input (enough to find the line `iptables-restore` names).
fn failing_line_context(input: &str) -> String {
    const SHOWN: usize = 40;
    let lines: Vec<&str> = input.lines().take(SHOWN).collect();
    let more = input.lines().count().saturating_sub(SHOWN);
    let mut text = lines.join("\n");
    if more > 0 {
        let _ = write!(text, "\n... {more} more lines");
    }
    text
}

/// The filter table of `backend` as it is now (empty when the backend has no filter table:
/// reading does not create one).
pub fn read_table(backend: Backend) -> Result<Saved, IptablesError> {
    Ok(parse_save(&run(backend.save_program(), &[], None)?))
}

/// `table` of `backend` as it is now (see [`read_table`]).
pub fn read_named_table(backend: Backend, table: &str) -> Result<Saved, IptablesError> {
    Ok(parse_table_save(
        &run(backend.save_program(), &["-t", table], None)?,
        table,
    ))
}

/// An ipset of ours as `ipset list -t` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    pub name: String,
    /// Rules (of any backend) that use it.
    pub references: u64,
}

/// Reads `ipset list -t` output: the sets whose name has our prefix.
pub fn parse_set_list(text: &str) -> Vec<SetInfo> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Name: ") {
            name = Some(n.trim().to_string());
        } else if let Some(r) = line.strip_prefix("References: ")
            && let Some(n) = name.take()
            && n.starts_with(PREFIX)
        {
            out.push(SetInfo {
                name: n,
                references: r.trim().parse().unwrap_or(u64::MAX),
            });
        }
    }
    out
}

/// Our ipsets now.
pub fn read_sets() -> Result<Vec<SetInfo>, IptablesError> {
    Ok(parse_set_list(&run("ipset", &["list", "-t"], None)?))
}

pub(super) fn ipset_restore(script: &str) -> Result<(), IptablesError> {
    run("ipset", &["-exist", "restore"], Some(script)).map(|_| ())
}

pub(super) fn iptables_restore(backend: Backend, script: &str) -> Result<(), IptablesError> {
    run(
        backend.restore_program(),
        &["--noflush", "--wait=10"],
        Some(script),
    )
    .map(|_| ())
}

/// What one apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub chains_written: usize,
    pub chains_unchanged: usize,
    pub chains_deleted: usize,
    pub hook_changes: usize,
    pub sets_created: usize,
    pub sets_destroyed: usize,
    /// Rules in all our chains after the apply.
    pub rules: usize,
}

impl Applied {
    /// Whether the apply changed anything in the kernel.
    pub fn changed(&self) -> bool {
        self.chains_written
            + self.chains_deleted
            + self.hook_changes
            + self.sets_created
            + self.sets_destroyed
            > 0
    }
}

/// Destroys our sets that no rule uses, except `keep`; how many.
fn destroy_unused(keep: &BTreeMap<String, Vec<ipnet::Ipv4Net>>) -> Result<usize, IptablesError> {
    let sets = match read_sets() {
        Ok(sets) => sets,
        // Without ipset there are no sets to destroy, unless some are wanted.
        Err(IptablesError::Missing { .. }) if keep.is_empty() => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut script = String::new();
    let mut n = 0;
    for set in sets {
        if set.references == 0 && !keep.contains_key(&set.name) {
            let _ = writeln!(script, "destroy {}", set.name);
            n += 1;
        }
    }
    if n > 0 {
        ipset_restore(&script)?;
    }
    Ok(n)
}

/// Applies `rendered` with `backend`: creates the sets it needs that do not exist, rewrites
/// the chains that differ from `previous` (all of them when `None`) and deletes stale ones in
/// one `iptables-restore --noflush` transaction, then destroys sets of ours nothing uses.
pub fn apply_with(
    backend: Backend,
    rendered: &Rendered,
    previous: Option<&Rendered>,
) -> Result<Applied, IptablesError> {
    let mut applied = Applied {
        rules: rendered.rule_count(),
        ..Applied::default()
    };
    if !rendered.sets.is_empty() {
        let existing: BTreeSet<String> = read_sets()?.into_iter().map(|s| s.name).collect();
        let missing: Vec<(&String, &Vec<ipnet::Ipv4Net>)> = rendered
            .sets
            .iter()
            .filter(|(name, _)| !existing.contains(*name))
            .collect();
        applied.sets_created = missing.len();
        if !missing.is_empty() {
            ipset_restore(&ipset_script(missing.into_iter()))?;
        }
    }
    let saved = read_table(backend)?;
    let p = plan(rendered, &saved, previous);
    applied.chains_written = p.written;
    applied.chains_unchanged = p.unchanged;
    applied.chains_deleted = p.deleted;
    applied.hook_changes = p.hook_changes;
    if let Some(script) = &p.script {
        debug!(
            backend = backend.name(),
            written = p.written,
            deleted = p.deleted,
            "iptables-restore"
        );
        iptables_restore(backend, script)?;
    }
    applied.sets_destroyed = destroy_unused(&rendered.sets)?;
    Ok(applied)
}

/// What a cleanup removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub chains: usize,
    pub jumps: usize,
    pub sets: usize,
    /// Our sets left because rules still use them (the other backend's, say).
    pub sets_in_use: usize,
    /// The backend's tools or `ipset` are not installed: nothing of theirs was looked at.
    pub missing_tools: Vec<String>,
}

/// Removes every chain of ours and every jump to them from `backend`'s filter table, then
/// every set of ours no rule uses.
pub fn cleanup(backend: Backend) -> Result<Cleaned, IptablesError> {
    let mut cleaned = Cleaned::default();
    match read_table(backend) {
        Ok(saved) => {
            cleaned.chains = saved.ours.len();
            cleaned.jumps = saved
                .others
                .values()
                .flatten()
                .filter(|s| felix_target(s).is_some())
                .count();
            if let Some(script) = cleanup_plan(&saved) {
                iptables_restore(backend, &script)?;
            }
        }
        Err(IptablesError::Missing { program }) => cleaned.missing_tools.push(program),
        Err(e) => return Err(e),
    }
    clean_sets(&mut cleaned)?;
    Ok(cleaned)
}

fn clean_sets(cleaned: &mut Cleaned) -> Result<(), IptablesError> {
    match read_sets() {
        Ok(sets) => {
            cleaned.sets_in_use = sets.iter().filter(|s| s.references > 0).count();
            cleaned.sets = destroy_unused(&BTreeMap::new())?;
        }
        Err(IptablesError::Missing { program }) => cleaned.missing_tools.push(program),
        Err(e) => return Err(e),
    }
    Ok(())
}
