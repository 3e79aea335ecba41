//! Placement by rendezvous (highest random weight) hashing: the owners of an object are the
//! `n` members with the highest `hash(object id, node id)`. Every node computes the same owners
//! from the same member list with no coordination, and when a member joins or leaves only the
//! objects it owns (about 1/N of them) change hands.
//!
//! Zones: owners are spread over as many zones as there are. Members are ranked by weight;
//! the first pass takes the best-ranked member of each zone not yet used, and the rest of the
//! `n` places go to the best-ranked members left.

use crate::ids::NodeId;

/// What placement needs to know of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub zone: Option<String>,
}

/// The weight of `node` for the object `object`.
fn weight(object: &[u8; 32], node: &NodeId) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("dstore v1 rendezvous");
    h.update(object);
    h.update(&node.0);
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// All candidates in rendezvous order for `object` (the first `n` are its owners; the rest are
/// the order in which others take over when owners fail).
pub fn rank(object: &[u8; 32], candidates: &[Candidate]) -> Vec<Candidate> {
    let mut ranked: Vec<(u64, &Candidate)> = candidates
        .iter()
        .map(|c| (weight(object, &c.id), c))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    ranked.into_iter().map(|(_, c)| c.clone()).collect()
}

/// The `n` owners of `object` (fewer if there are fewer candidates), zone-spread.
pub fn owners(object: &[u8; 32], candidates: &[Candidate], n: usize) -> Vec<Candidate> {
    let ranked = rank(object, candidates);
    let mut chosen: Vec<Candidate> = Vec::with_capacity(n);
    let mut zones_used: Vec<&Option<String>> = Vec::new();
    for c in &ranked {
        if chosen.len() < n && !zones_used.contains(&&c.zone) {
            zones_used.push(&c.zone);
            chosen.push(c.clone());
        }
    }
    for c in &ranked {
        if chosen.len() < n && !chosen.contains(c) {
            chosen.push(c.clone());
        }
    }
    // Keep rendezvous order among the chosen, so "the first owner" is stable.
    ranked.into_iter().filter(|c| chosen.contains(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u8, zones: u8) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: NodeId([i; 32]),
                zone: (zones > 0).then(|| format!("z{}", i % zones)),
            })
            .collect()
    }

    #[test]
    fn owners_are_stable_distinct_and_capped() {
        let m = members(5, 0);
        let a = owners(&[7; 32], &m, 3);
        assert_eq!(a.len(), 3);
        assert_eq!(a, owners(&[7; 32], &m, 3));
        let mut ids: Vec<_> = a.iter().map(|c| c.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        assert_eq!(owners(&[7; 32], &m[..2], 3).len(), 2);
        // Input order does not matter.
        let mut reversed = m.clone();
        reversed.reverse();
        assert_eq!(owners(&[7; 32], &reversed, 3), a);
    }

    #[test]
    fn adding_a_member_moves_about_one_in_n() {
        let before = members(9, 0);
        let after = members(10, 0);
        let objects = 5000u32;
        let moved = (0..objects)
            .filter(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_le_bytes());
                owners(&id, &before, 1) != owners(&id, &after, 1)
            })
            .count();
        // Expect 1/10 of the objects (500); allow for chance.
        assert!((350..650).contains(&moved), "{moved} of {objects} moved");
    }

    #[test]
    fn owners_span_every_zone_when_they_can() {
        let m = members(9, 3);
        for i in 0..200u8 {
            let o = owners(&[i; 32], &m, 3);
            let mut zones: Vec<_> = o.iter().map(|c| c.zone.clone()).collect();
            zones.sort();
            zones.dedup();
            assert_eq!(zones.len(), 3, "object {i}: {o:?}");
        }
        // More owners than zones: every zone, then the best of the rest.
        assert_eq!(owners(&[1; 32], &members(6, 2), 4).len(), 4);
    }
}
