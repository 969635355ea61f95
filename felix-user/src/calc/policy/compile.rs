//! The policy compiler: a [`Program`] (ordered entries) becomes lookup tables that classify a
//! packet in four lookups whatever the number of rules.
//!
//! The packet's remote address, destination port and source port are each mapped to an
//! *equivalence class*: two values share a class when exactly the same entries match them.
//! Addresses are classed by the most specific CIDR (among every CIDR the rules mention) that
//! holds them: CIDRs nest or are disjoint, so that CIDR and its ancestors say which sets hold
//! the address. Ports are classed per protocol by the elementary intervals between the rules'
//! range boundaries. The verdict of every combination of classes is then computed once here,
//! walking the entries in order ("painting" the grid of port classes of one address class), and
//! stored; per address class only the combinations that differ from the row's most common
//! verdict are stored, the row default covers the rest.
//!
//! The cost moves from packets to the compiler: tables grow with the product of address and
//! port classes only where rules combine many addresses with many ports. [`MAX_WORK`] bounds
//! the compile time; a policy beyond it is refused (and the caller keeps denying).

use std::collections::{BTreeSet, HashMap};

use felix_common::policy::CLASS_ANY;
use ipnet::Ipv4Net;

use super::program::{Entry, Match, PortMatch, Probe, Program, Step};

/// Most cell updates one compile may do before it gives up.
pub const MAX_WORK: u64 = 400_000_000;
/// Most port classes per field (a class is a `u16` and `u16::MAX` means "any").
const MAX_PORT_CLASSES: usize = CLASS_ANY as usize;
/// Protocol value the compiler uses to probe "a protocol no rule names".
const UNNAMED_PROTO: Option<u8> = None;

/// The outcome for a combination of classes: allow or deny, and the deciding entry (`None`:
/// the program's default deny).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    pub allow: bool,
    pub entry: Option<usize>,
}

/// Which port a port-table entry classifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortField {
    Dst,
    Src,
}

/// One entry of the port table: `proto` `None` covers every protocol no rule names; else the
/// port prefix `port`/`bits` of that protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortEntry {
    pub field: PortField,
    pub proto: Option<u8>,
    pub port: u16,
    pub bits: u8,
    pub class: u16,
}

/// Key of the verdict table: address class, destination class, source class
/// ([`CLASS_ANY`] twice for a row default).
pub type VerdictKey = (u32, u16, u16);

/// The tables of one compiled program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Remote CIDR -> address class; always holds `0.0.0.0/0`.
    pub ips: Vec<(Ipv4Net, u32)>,
    pub ports: Vec<PortEntry>,
    pub verdicts: Vec<(VerdictKey, Outcome)>,
}

/// Why a program was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("policy too complex to compile: more than {MAX_WORK} table cells to compute")]
    TooComplex,
    #[error("policy too complex to compile: more than {MAX_PORT_CLASSES} port classes")]
    TooManyPortClasses,
}

/// Compiles `program`.
pub fn compile(program: &Program) -> Result<Compiled, CompileError> {
    let ip = classify_addresses(&program.entries);
    let dst = classify_ports(&program.entries, PortField::Dst)?;
    let src = classify_ports(&program.entries, PortField::Src)?;
    let verdicts = paint(program, &ip, &dst, &src)?;
    let mut ports = dst.entries;
    ports.extend(src.entries);
    Ok(Compiled {
        ips: ip.entries,
        ports,
        verdicts,
    })
}

/// Address classes: the table, and per class the constrained entries that match it.
struct AddressClasses {
    entries: Vec<(Ipv4Net, u32)>,
    members: Vec<Vec<usize>>,
}

fn classify_addresses(entries: &[Entry]) -> AddressClasses {
    // Distinct address sets, and per set the entries that need (or refuse) it.
    let mut set_ids: HashMap<&[Ipv4Net], usize> = HashMap::new();
    let mut needs: Vec<(usize, Vec<usize>, Vec<usize>)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(m) = &entry.matcher else { continue };
        if m.remote.is_any() {
            continue;
        }
        let all: Vec<usize> = m
            .remote
            .all_of
            .iter()
            .map(|s| intern_set(&mut set_ids, s))
            .collect();
        let none: Vec<usize> = m
            .remote
            .none_of
            .iter()
            .map(|s| intern_set(&mut set_ids, s))
            .collect();
        needs.push((i, all, none));
    }
    // Atoms: every CIDR, with the sets that name it.
    let mut atoms: HashMap<Ipv4Net, Vec<usize>> = HashMap::new();
    for (set, id) in &set_ids {
        for net in set.iter() {
            atoms.entry(net.trunc()).or_default().push(*id);
        }
    }
    let root = Ipv4Net::default();
    atoms.entry(root).or_default();
    let mut order: Vec<Ipv4Net> = atoms.keys().copied().collect();
    order.sort_by_key(|n| (n.prefix_len(), n.network()));
    // Sets holding every address of an atom: its own and its ancestors'.
    let mut covered: HashMap<Ipv4Net, Vec<usize>> = HashMap::with_capacity(order.len());
    let mut parent: HashMap<Ipv4Net, Ipv4Net> = HashMap::with_capacity(order.len());
    for net in &order {
        let up = ancestor(net, &atoms);
        let mut sets: Vec<usize> = up.map(|p| covered[&p].clone()).unwrap_or_default();
        sets.extend(atoms[net].iter().copied());
        sets.sort_unstable();
        sets.dedup();
        covered.insert(*net, sets);
        if let Some(p) = up {
            parent.insert(*net, p);
        }
    }
    let mut by_set: Vec<Vec<usize>> = vec![Vec::new(); set_ids.len()];
    let mut negative_only = Vec::new();
    for (k, (_, all, _)) in needs.iter().enumerate() {
        if all.is_empty() {
            negative_only.push(k);
        }
        for s in all {
            by_set[*s].push(k);
        }
    }
    let mut class_of_members: HashMap<Vec<usize>, u32> = HashMap::new();
    let mut members = Vec::new();
    let mut class_of_atom: HashMap<Ipv4Net, u32> = HashMap::with_capacity(order.len());
    for net in &order {
        let sets = &covered[net];
        let mut candidates: BTreeSet<usize> = negative_only.iter().copied().collect();
        for s in sets {
            candidates.extend(by_set[*s].iter().copied());
        }
        let matching: Vec<usize> = candidates
            .into_iter()
            .filter(|k| {
                let (_, all, none) = &needs[*k];
                all.iter().all(|s| sets.binary_search(s).is_ok())
                    && !none.iter().any(|s| sets.binary_search(s).is_ok())
            })
            .map(|k| needs[k].0)
            .collect();
        let next = class_of_members.len() as u32;
        let class = *class_of_members.entry(matching.clone()).or_insert_with(|| {
            members.push(matching);
            next
        });
        class_of_atom.insert(*net, class);
    }
    let entries = order
        .iter()
        .filter(|net| {
            **net == root || parent.get(net).map(|p| class_of_atom[p]) != Some(class_of_atom[net])
        })
        .map(|net| (*net, class_of_atom[net]))
        .collect();
    AddressClasses { entries, members }
}

fn intern_set<'a>(ids: &mut HashMap<&'a [Ipv4Net], usize>, set: &'a [Ipv4Net]) -> usize {
    let next = ids.len();
    *ids.entry(set).or_insert(next)
}

/// The longest CIDR among `atoms` that strictly contains `net`.
fn ancestor<V>(net: &Ipv4Net, atoms: &HashMap<Ipv4Net, V>) -> Option<Ipv4Net> {
    (0..net.prefix_len()).rev().find_map(|len| {
        let up = Ipv4Net::new(net.network(), len).ok()?.trunc();
        atoms.contains_key(&up).then_some(up)
    })
}

/// Port classes of one field: the table, and per entry the classes it matches (`None`: all).
struct PortClasses {
    entries: Vec<PortEntry>,
    count: usize,
    covers: Vec<Option<Vec<u16>>>,
}

fn field_of(m: &Match, field: PortField) -> &PortMatch {
    match field {
        PortField::Dst => &m.dst_ports,
        PortField::Src => &m.src_ports,
    }
}

fn classify_ports(entries: &[Entry], field: PortField) -> Result<PortClasses, CompileError> {
    let relevant: Vec<(usize, &Match)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.matcher.as_ref().map(|m| (i, m)))
        .filter(|(_, m)| {
            m.proto.is.is_some() || m.proto.not.is_some() || !field_of(m, field).is_any()
        })
        .collect();
    let named: BTreeSet<u8> = relevant
        .iter()
        .flat_map(|(_, m)| m.proto.is.into_iter().chain(m.proto.not))
        .collect();
    let mut class_of: HashMap<Vec<usize>, u16> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut intern = |sig: Vec<usize>| -> Result<u16, CompileError> {
        if let Some(c) = class_of.get(&sig) {
            return Ok(*c);
        }
        if members.len() >= MAX_PORT_CLASSES {
            return Err(CompileError::TooManyPortClasses);
        }
        let c = members.len() as u16;
        class_of.insert(sig.clone(), c);
        members.push(sig);
        Ok(c)
    };
    let signature = |proto: Option<u8>, port: u16| -> Vec<usize> {
        relevant
            .iter()
            .filter(|(_, m)| {
                let proto_ok = match proto {
                    Some(p) => m.proto.matches(p),
                    None => m.proto.is.is_none(),
                };
                proto_ok && field_of(m, field).matches(port)
            })
            .map(|(i, _)| *i)
            .collect()
    };
    let mut table = Vec::new();
    let other = intern(signature(UNNAMED_PROTO, 0))?;
    table.push(PortEntry {
        field,
        proto: None,
        port: 0,
        bits: 0,
        class: other,
    });
    for proto in named {
        let mut bounds: BTreeSet<u32> = BTreeSet::from([0]);
        for (_, m) in &relevant {
            if !m.proto.matches(proto) {
                continue;
            }
            let ports = field_of(m, field);
            for (lo, hi) in ports.any_of.iter().chain(&ports.none_of) {
                bounds.insert(u32::from(*lo));
                bounds.insert(u32::from(*hi) + 1);
            }
        }
        bounds.insert(1 << 16);
        let bounds: Vec<u32> = bounds.into_iter().collect();
        // Consecutive intervals of one class become one range.
        let mut ranges: Vec<(u32, u32, u16)> = Vec::new();
        for w in bounds.windows(2) {
            let class = intern(signature(Some(proto), w[0] as u16))?;
            match ranges.last_mut() {
                Some(last) if last.2 == class => last.1 = w[1] - 1,
                _ => ranges.push((w[0], w[1] - 1, class)),
            }
        }
        for (lo, hi, class) in ranges {
            for (port, bits) in range_prefixes(lo, hi) {
                table.push(PortEntry {
                    field,
                    proto: Some(proto),
                    port,
                    bits,
                    class,
                });
            }
        }
    }
    let mut covers: Vec<Option<Vec<u16>>> = vec![None; entries.len()];
    for (c, sig) in members.iter().enumerate() {
        for i in sig {
            covers[*i].get_or_insert_with(Vec::new).push(c as u16);
        }
    }
    // A relevant entry that no class holds covers nothing (not "all").
    for (i, _) in &relevant {
        covers[*i].get_or_insert_with(Vec::new);
    }
    Ok(PortClasses {
        entries: table,
        count: members.len(),
        covers,
    })
}

/// Splits `lo..=hi` (within 0..=65535) into aligned prefixes `(start, prefix bits)`.
pub fn range_prefixes(lo: u32, hi: u32) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let mut start = lo;
    while start <= hi {
        let mut size = if start == 0 {
            1 << 16
        } else {
            1 << start.trailing_zeros().min(16)
        };
        while start + size - 1 > hi {
            size >>= 1;
        }
        out.push((start as u16, 16 - size.trailing_zeros() as u8));
        start += size;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Open,
    Passed,
    Final(Outcome),
}

/// Computes the verdict of every (address class, destination class, source class).
fn paint(
    program: &Program,
    ip: &AddressClasses,
    dst: &PortClasses,
    src: &PortClasses,
) -> Result<Vec<(VerdictKey, Outcome)>, CompileError> {
    let entries = &program.entries;
    let everywhere: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.matcher.as_ref().is_none_or(|m| m.remote.is_any()))
        .map(|(i, _)| i)
        .collect();
    let (d, s) = (dst.count, src.count);
    let cells = d * s;
    let mut work: u64 = 0;
    let mut verdicts = Vec::new();
    let mut grid = vec![Cell::Open; cells];
    for (class, row) in ip.members.iter().enumerate() {
        grid.fill(Cell::Open);
        let mut open = cells;
        for i in merge_sorted(row, &everywhere) {
            if open == 0 {
                break;
            }
            let entry = &entries[i];
            work += cells as u64;
            if work > MAX_WORK {
                return Err(CompileError::TooComplex);
            }
            match entry.step {
                Step::EndOfTier { pass } => {
                    for cell in grid.iter_mut() {
                        match cell {
                            Cell::Open if !pass => {
                                *cell = Cell::Final(Outcome {
                                    allow: false,
                                    entry: Some(i),
                                });
                                open -= 1;
                            }
                            Cell::Passed => *cell = Cell::Open,
                            _ => {}
                        }
                    }
                }
                Step::EndOfProfile => {
                    for cell in grid.iter_mut().filter(|c| **c == Cell::Passed) {
                        *cell = Cell::Open;
                    }
                }
                step => {
                    let outcome = match step {
                        Step::Allow => Some(true),
                        Step::Deny => Some(false),
                        _ => None,
                    };
                    let ds = class_list(&dst.covers[i], d);
                    let ss = class_list(&src.covers[i], s);
                    for dc in &ds {
                        for sc in &ss {
                            let cell = &mut grid[*dc as usize * s + *sc as usize];
                            if *cell != Cell::Open {
                                continue;
                            }
                            *cell = match outcome {
                                Some(allow) => {
                                    open -= 1;
                                    Cell::Final(Outcome {
                                        allow,
                                        entry: Some(i),
                                    })
                                }
                                None => Cell::Passed,
                            };
                        }
                    }
                }
            }
        }
        let deny = Outcome {
            allow: false,
            entry: None,
        };
        let row_outcomes: Vec<Outcome> = grid
            .iter()
            .map(|c| match c {
                Cell::Final(o) => *o,
                _ => deny,
            })
            .collect();
        let mut counts: HashMap<Outcome, usize> = HashMap::new();
        for o in &row_outcomes {
            *counts.entry(*o).or_default() += 1;
        }
        let default = counts
            .iter()
            .max_by_key(|(o, n)| (**n, std::cmp::Reverse(o.entry)))
            .map_or(deny, |(o, _)| *o);
        let class = class as u32;
        verdicts.push(((class, CLASS_ANY, CLASS_ANY), default));
        for (k, o) in row_outcomes.iter().enumerate() {
            if *o != default {
                verdicts.push(((class, (k / s) as u16, (k % s) as u16), *o));
            }
        }
    }
    Ok(verdicts)
}

fn class_list(covers: &Option<Vec<u16>>, count: usize) -> Vec<u16> {
    match covers {
        Some(list) => list.clone(),
        None => (0..count as u16).collect(),
    }
}

/// Merges two ascending lists of entry indices (disjoint) into one ascending list.
fn merge_sorted(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j >= b.len() || (i < a.len() && a[i] < b[j]) {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out
}

impl Compiled {
    /// Classifies `probe` with the tables, as the kernel does: the outcome, or `None` when a
    /// table has no answer (which the kernel treats as "no policy").
    pub fn lookup(&self, probe: &Probe) -> Option<Outcome> {
        let ip_class = self
            .ips
            .iter()
            .filter(|(net, _)| net.contains(&probe.remote))
            .max_by_key(|(net, _)| net.prefix_len())?
            .1;
        let dst = self.port_class(PortField::Dst, probe.proto, probe.dst_port)?;
        let src = self.port_class(PortField::Src, probe.proto, probe.src_port)?;
        let find = |key: VerdictKey| self.verdicts.iter().find(|(k, _)| *k == key);
        find((ip_class, dst, src))
            .or_else(|| find((ip_class, CLASS_ANY, CLASS_ANY)))
            .map(|(_, o)| *o)
    }

    fn port_class(&self, field: PortField, proto: u8, port: u16) -> Option<u16> {
        let within = |e: &&PortEntry| {
            let mask = if e.bits == 0 {
                0
            } else {
                u16::MAX << (16 - e.bits)
            };
            e.field == field && e.proto == Some(proto) && port & mask == e.port
        };
        self.ports
            .iter()
            .filter(within)
            .max_by_key(|e| e.bits)
            .or_else(|| {
                self.ports
                    .iter()
                    .find(|e| e.field == field && e.proto.is_none())
            })
            .map(|e| e.class)
    }
}
