//! A cache miss followed without a task of its own.
//!
//! Most misses go to a plain `udp://` upstream and lead their flight. For
//! those, the query's state is plain data, a `Chase`, moved into the
//! callback of each UDP exchange it makes (`DirectUdp::send_then`): the
//! upstream socket's reader calls it with the answer, the response rules
//! judge it there and then, and the reply goes straight to the client's
//! listener. A waiting query then costs a few hundred bytes (the chase and
//! the socket's wait) instead of a task and its boxed resolution (~2 KB),
//! and no task is spawned, polled or woken.
//!
//! An answer that does not fit UDP (truncated, or longer than a receive
//! buffer) is asked again over TCP on a task, and the chase goes on from
//! there (`DirectUdp::over_tcp`).
//!
//! Everything else (TCP clients, `ipversion_prefer`, followers of a flight,
//! upstreams of other kinds or through proxy nodes) takes the task:
//! `Controller::finish`. A response rule that sends a chase on to such an
//! upstream continues it on a task from where it is.
//!
//! Neighbours: `controller` (`pursue` starts chases; `judge`, `land` and
//! `write_reply` are shared with the task), `forwarder::DirectUdp` (the
//! exchange), the listener (`deliver`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use super::singleflight::{Flights, Join, Lead, Outcome};
use super::{Client, Controller, Pending, Transport, Verdict, MAX_LOOKUP_DEPTH};
use crate::config::DnsTarget;
use crate::forwarder::{self, Answer, DirectUdp};
use crate::wire;

/// A reply's way to its client: `deliver` (a `FnOnce(&[u8]) ->
/// Option<Sending>`) sends or queues the reply at once where it can and
/// returns `None`, or returns the future that sends it (with its own copy).
pub type Sending = Pin<Box<dyn std::future::Future<Output = ()>>>;

thread_local! {
    /// The buffer chases write their replies in.
    static REPLY: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A reply buffer that grew past this is let go.
const REPLY_KEEP: usize = 4096;

/// A miss on its way through upstreams, as plain data.
struct Chase<F> {
    controller: Rc<Controller>,
    p: Pending,
    client: Client,
    lead: Lead,
    /// The query name as text, when the response rules need it.
    qname: String,
    deadline: Instant,
    /// Upstreams asked so far.
    asked: usize,
    deliver: F,
}

impl Controller {
    /// Answers a pending query and hands the reply for its client to
    /// `deliver`: as a `Chase` when it can be one, else on a task of its
    /// own (`finish`).
    pub fn pursue<F>(self: &Rc<Self>, p: Pending, client: Client, deliver: F)
    where
        F: FnOnce(&[u8]) -> Option<Sending> + 'static,
    {
        let direct = match &p.target {
            DnsTarget::Upstream { index, name }
                if p.preferred.is_none()
                    && client.transport == Transport::Udp
                    && !self.flights.borrow().in_flight(&p.key) =>
            {
                p.policy.forwarders[*index]
                    .direct_udp()
                    .map(|udp| (udp, name.clone()))
            }
            _ => None,
        };
        let lead = match direct {
            Some(_) => match Flights::join(&self.flights, &p.key) {
                Join::Lead(lead) => Some(lead),
                // Not in flight a moment ago: never, but a task copes.
                Join::Follow(_) => None,
            },
            None => None,
        };
        let (Some((udp, name)), Some(lead)) = (direct, lead) else {
            tokio::task::spawn_local(self.clone().finish(p, client, deliver));
            return;
        };
        let mut qname = String::new();
        if p.policy.needs_qname_text() {
            wire::name_to_text(p.info.qname(&p.query), &mut qname);
        }
        let chase = Chase {
            controller: self.clone(),
            deadline: p.arrived + p.policy.timeout,
            p,
            client,
            lead,
            qname,
            asked: 0,
            deliver,
        };
        chase.ask(udp, name);
    }
}

impl<F> Chase<F>
where
    F: FnOnce(&[u8]) -> Option<Sending> + 'static,
{
    /// Sends the query to the upstream `name`, reached over `udp`; the
    /// answer comes back to `answered` (over TCP first if it did not fit
    /// UDP). The query's bytes go with it (the wait keeps them, with our
    /// id) and come back with the answer.
    fn ask(mut self, udp: DirectUdp, name: Rc<str>) {
        self.controller.stats.borrow_mut().upstream_exchanges += 1;
        let query = std::mem::take(&mut self.p.query).into_boxed_slice();
        let (question_end, deadline) = (self.p.info.question_end, self.deadline);
        let arrived = self.p.arrived;
        let pool = udp.pool();
        pool.send_then(
            query,
            question_end,
            arrived,
            deadline,
            Box::new(move |answer, query| {
                self.p.query = query.into_vec();
                wire::set_id(&mut self.p.query, self.p.info.id);
                if !forwarder::needs_tcp(&answer) {
                    return self.answered(&name, answer);
                }
                tokio::task::spawn_local(async move {
                    let p = &self.p;
                    let answer = udp.over_tcp(&p.query, &p.info, answer, deadline).await;
                    self.answered(&name, answer)
                });
            }),
        );
    }

    /// Judges upstream `name`'s answer: the outcome, or the next upstream.
    fn answered(mut self, name: &str, answer: Answer) {
        let now = Instant::now();
        let p = &self.p;
        let verdict = self.controller.judge(
            &p.policy,
            &p.query,
            &p.info,
            &p.key,
            name,
            answer,
            &self.qname,
            now,
        );
        self.asked += 1;
        match verdict {
            Verdict::Done(outcome) => self.finish(outcome, now),
            Verdict::Next(_) if self.asked >= MAX_LOOKUP_DEPTH => {
                self.controller
                    .warn_lookup_loop(&self.p.query, &self.p.info);
                self.finish(Err(()), now);
            }
            Verdict::Next(next) => self.go_on(next),
        }
    }

    /// Asks the next upstream the response rules chose: as a chase if it
    /// is plain direct UDP too, else on a task.
    fn go_on(self, next: DnsTarget) {
        let direct = match &next {
            DnsTarget::Upstream { index, name } => self.p.policy.forwarders[*index]
                .direct_udp()
                .map(|udp| (udp, name.clone())),
            _ => None,
        };
        match direct {
            Some((udp, name)) => self.ask(udp, name),
            None => {
                tokio::task::spawn_local(async move {
                    let p = &self.p;
                    let outcome = self
                        .controller
                        .ask_upstreams(
                            &p.policy,
                            &p.query,
                            &p.info,
                            &p.key,
                            &next,
                            &self.client,
                            &self.qname,
                            self.asked,
                            self.deadline,
                        )
                        .await;
                    self.finish(outcome, Instant::now());
                });
            }
        }
    }

    /// Lands the flight and replies to the client (from a buffer kept for
    /// replies: the listener copies the reply into its batch).
    fn finish(self, outcome: Outcome, now: Instant) {
        let Chase {
            controller,
            p,
            client,
            lead,
            qname,
            deliver,
            ..
        } = self;
        controller.land(lead, &outcome);
        let mut out = REPLY.take();
        out.clear();
        controller.write_reply(Some(outcome), &p, &client, now, &mut out);
        drop((p, qname));
        let sending = deliver(&out);
        if out.capacity() <= REPLY_KEEP {
            REPLY.set(out);
        }
        if let Some(sending) = sending {
            tokio::task::spawn_local(sending);
        }
    }
}
