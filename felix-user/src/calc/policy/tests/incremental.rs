//! The cached, incrementally kept programs against a calculation built afresh: random worlds
//! turned into other random worlds one upsert or removal at a time, with every endpoint's
//! programs compared after each change.

use std::collections::BTreeMap;

use calico::model::Resource;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::calc::policy::{calc::PolicyCalc, generate::world};

/// A change: upsert the resource, or remove the key.
enum Change {
    Upsert(Box<Resource>),
    Remove(String),
}

fn endpoint_keys(current: &BTreeMap<String, Resource>) -> Vec<String> {
    current
        .iter()
        .filter(|(_, r)| matches!(r, Resource::WorkloadEndpoint(_)))
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn cached_programs_equal_a_fresh_calculation_after_every_change() {
    let mut rng = StdRng::seed_from_u64(0x1c4e);
    let mut compared = 0;
    for world_no in 0..60 {
        let first = world(&mut rng);
        let second = world(&mut rng);
        let mut current: BTreeMap<String, Resource> =
            first.iter().map(|r| (r.key(), r.clone())).collect();
        let mut calc = PolicyCalc::from_resources(current.values());
        for key in endpoint_keys(&current) {
            calc.programs(&key).expect("programs");
        }
        let mut changes: Vec<Change> = second
            .iter()
            .cloned()
            .map(|r| Change::Upsert(Box::new(r)))
            .collect();
        let kept: Vec<String> = second.iter().map(Resource::key).collect();
        changes.extend(
            current
                .keys()
                .filter(|k| !kept.contains(k))
                .cloned()
                .map(Change::Remove),
        );
        changes.shuffle(&mut rng);
        for (step, change) in changes.into_iter().enumerate() {
            match change {
                Change::Upsert(r) => {
                    calc.upsert(&r.key(), &r);
                    current.insert(r.key(), *r);
                }
                Change::Remove(k) => {
                    calc.remove(&k);
                    current.remove(&k);
                }
            }
            let mut fresh = PolicyCalc::from_resources(current.values());
            for key in endpoint_keys(&current) {
                assert_eq!(
                    calc.programs(&key),
                    fresh.programs(&key),
                    "world {world_no}, step {step}: programs of {key}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 1_000, "{compared} comparisons");
}
