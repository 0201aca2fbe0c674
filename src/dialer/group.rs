//! Groups: several nodes, and the policy that picks the one a dial takes.
//!
//! Only nodes whose health record for the dial's layer-4 protocol and IP
//! version is alive take part (and that can carry it: an HTTP proxy carries
//! no UDP). Policies, as dae names them:
//! - `random`: any of them, per dial;
//! - `fixed(N)`: the N-th node of the group (0-based), while it is alive;
//! - `min`, `min_avg10`, `min_moving_avg`: the fastest by the last check,
//!   the mean of the last ten, or the moving average. A group keeps its
//!   current node until another is faster by more than `check_tolerance`,
//!   so near-equal nodes do not flap. Unchecked nodes rank last.
//!
//! Neighbours: `node`, `health`, `outbound` (asks a group for a node).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::health::slot;
use super::node::{Node, L4};
use crate::config::GroupPolicy;

pub struct Group {
    pub name: String,
    pub policy: GroupPolicy,
    pub nodes: Vec<Rc<Node>>,
    tolerance: Duration,
    /// The node a min policy picked last, per (l4, IP version).
    current: RefCell<[Option<usize>; 4]>,
}

impl Group {
    pub fn new(
        name: &str,
        policy: GroupPolicy,
        nodes: Vec<Rc<Node>>,
        tolerance: Duration,
    ) -> Group {
        Group {
            name: name.to_string(),
            policy,
            nodes,
            tolerance,
            current: RefCell::new([None; 4]),
        }
    }

    /// Takes over the nodes `previous` (the same group before a reload or
    /// a subscription refresh) had picked, where this group still has
    /// them: a rebuild does not move dials to another node.
    pub fn keep_choices(&self, previous: &Group) {
        let before = previous.current.borrow();
        let mut now = self.current.borrow_mut();
        for (slot, picked) in before.iter().enumerate() {
            now[slot] = picked.and_then(|i| {
                let node = previous.nodes.get(i)?;
                self.nodes.iter().position(|n| Rc::ptr_eq(n, node))
            });
        }
    }

    fn usable(&self, i: usize, l4: L4, v6: bool) -> bool {
        let n = &self.nodes[i];
        n.carries(l4) && n.health.alive(l4, v6)
    }

    /// The node for a dial of `l4` over IPv6 (`v6`) or IPv4; none when no
    /// node of the group works for it.
    pub fn pick(&self, l4: L4, v6: bool) -> Option<Rc<Node>> {
        let usable: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.usable(i, l4, v6))
            .collect();
        let chosen = match self.policy {
            GroupPolicy::Fixed(n) => usable.contains(&n).then_some(n),
            GroupPolicy::Random => match usable.len() {
                0 => None,
                len => Some(usable[usize::from(crate::rand::u16()) % len]),
            },
            GroupPolicy::Min | GroupPolicy::MinAvg10 | GroupPolicy::MinMovingAvg => {
                self.fastest(&usable, l4, v6)
            }
        };
        chosen.map(|i| self.nodes[i].clone())
    }

    /// The latency a min policy ranks node `i` by (None: not measured).
    fn latency(&self, i: usize, l4: L4, v6: bool) -> Option<Duration> {
        let r = self.nodes[i].health.record(l4, v6);
        match self.policy {
            GroupPolicy::Min => r.last(),
            GroupPolicy::MinAvg10 => r.avg10(),
            _ => r.moving_avg(),
        }
    }

    fn fastest(&self, usable: &[usize], l4: L4, v6: bool) -> Option<usize> {
        let rank = |i: usize| self.latency(i, l4, v6).unwrap_or(Duration::MAX);
        let best = usable.iter().copied().min_by_key(|&i| rank(i))?;
        let mut current = self.current.borrow_mut();
        let keep = current[slot(l4, v6)].filter(|c| {
            usable.contains(c) && rank(*c).saturating_sub(rank(best)) <= self.tolerance
        });
        let pick = keep.unwrap_or(best);
        current[slot(l4, v6)] = Some(pick);
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Rc<Node> {
        let link = format!("socks5://192.0.2.{}:1080", name.len());
        Rc::new(Node::new(name, &link, || Err("no roots".into()), None).unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn min_policies_pick_the_fastest_and_keep_it_within_tolerance() {
        let (a, b) = (node("a"), node("bb"));
        let g = Group::new("g", GroupPolicy::Min, vec![a.clone(), b.clone()], ms(50));
        a.health.passed(L4::Tcp, false, ms(100));
        b.health.passed(L4::Tcp, false, ms(30));
        assert_eq!(g.pick(L4::Tcp, false).unwrap().name, "bb");
        // a is faster now, but not by more than the tolerance: stay.
        a.health.passed(L4::Tcp, false, ms(10));
        b.health.passed(L4::Tcp, false, ms(55));
        assert_eq!(g.pick(L4::Tcp, false).unwrap().name, "bb");
        b.health.passed(L4::Tcp, false, ms(200));
        assert_eq!(g.pick(L4::Tcp, false).unwrap().name, "a");
        // Down nodes leave the selection; none left means none.
        a.health.failed(L4::Tcp, false, "refused".into());
        assert_eq!(g.pick(L4::Tcp, false).unwrap().name, "bb");
        b.health.failed(L4::Tcp, false, "refused".into());
        assert!(g.pick(L4::Tcp, false).is_none());
        // Other protocols and versions are separate.
        assert!(g.pick(L4::Udp, false).is_some());
    }

    #[test]
    fn a_rebuilt_group_keeps_the_node_it_picked() {
        let (a, b, c) = (node("a"), node("bb"), node("ccc"));
        let old = Group::new("g", GroupPolicy::Min, vec![a.clone(), b.clone()], ms(50));
        a.health.passed(L4::Tcp, false, ms(40));
        b.health.passed(L4::Tcp, false, ms(30));
        assert_eq!(old.pick(L4::Tcp, false).unwrap().name, "bb");
        // Within the tolerance a is faster now: a new group would pick it.
        a.health.passed(L4::Tcp, false, ms(10));
        b.health.passed(L4::Tcp, false, ms(45));
        let new = Group::new("g", GroupPolicy::Min, vec![c, a, b.clone()], ms(50));
        new.keep_choices(&old);
        assert_eq!(new.pick(L4::Tcp, false).unwrap().name, "bb");
        let without_b = Group::new("g", GroupPolicy::Min, vec![node("a")], ms(50));
        without_b.keep_choices(&old);
        assert_eq!(without_b.current.borrow()[slot(L4::Tcp, false)], None);
    }

    #[test]
    fn fixed_and_random() {
        let (a, b) = (node("a"), node("bb"));
        let g = Group::new(
            "g",
            GroupPolicy::Fixed(1),
            vec![a.clone(), b.clone()],
            ms(0),
        );
        assert_eq!(g.pick(L4::Udp, true).unwrap().name, "bb");
        b.health.failed(L4::Udp, true, "timed out".into());
        assert!(
            g.pick(L4::Udp, true).is_none(),
            "fixed never moves to another node"
        );
        let r = Group::new("r", GroupPolicy::Random, vec![a.clone(), b.clone()], ms(0));
        for _ in 0..20 {
            assert_eq!(r.pick(L4::Udp, true).unwrap().name, "a");
        }
    }
}
