//! Turns: tasks of one core proceed in the order they took a ticket.
//!
//! A core's flushes run concurrently (one per connection task, the UDP
//! loop, the replay): each takes its batches, waits for its journal
//! commit, then sends. Commits can finish out of order (a commit that
//! syncs returns after a later one that does not), but the batches must
//! reach a peer in the order they were taken: a batch's stamp says that
//! every record of its source up to the stamp has been handed over, and
//! the peer records that as what its state covers. A flush takes a
//! [`Turn`] when it takes its batches and waits for it before sending;
//! the turn passes on when it is dropped, sent or not (a task cancelled
//! while it waits gives its turn up rather than holding every later one).
//!
//! A flush that may drop its batches (UDP: nobody to push back on) need
//! not wait behind one that waits for room in a peer's channel: the
//! holder says so ([`Turn::stall`]), and [`Turn::wait_unless_stalled`]
//! then returns the peer instead of the turn, so the dropping flush drops
//! that peer's batches (they would not have found room either) and keeps
//! reading, as it did before flushes took turns.
//!
//! Single-threaded, like everything a core owns.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// The ticket dispenser and the ticket being served.
#[derive(Debug, Default)]
pub struct Turns {
    /// The next ticket to hand out.
    issued: Cell<u64>,
    /// The ticket whose turn it is.
    serving: Cell<u64>,
    /// Tickets given up or finished before their turn came.
    done_early: RefCell<BTreeSet<u64>>,
    /// Tasks waiting for their turn, by ticket.
    waiting: RefCell<BTreeMap<u64, Waker>>,
    /// The peer whose channel the ticket being served waits for room in.
    stalled_on: Cell<Option<usize>>,
}

/// One ticket. Its turn comes once every earlier ticket is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    turns: &'a Turns,
    ticket: u64,
}

impl Turns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next ticket (in the order of the calls).
    pub fn take(&self) -> Turn<'_> {
        let ticket = self.issued.get();
        self.issued.set(ticket + 1);
        Turn {
            turns: self,
            ticket,
        }
    }

    /// How many tickets are out and not yet dropped.
    #[cfg(test)]
    pub fn outstanding(&self) -> u64 {
        self.issued.get() - self.serving.get() - self.done_early.borrow().len() as u64
    }

    fn finish(&self, ticket: u64) {
        self.waiting.borrow_mut().remove(&ticket);
        if ticket != self.serving.get() {
            self.done_early.borrow_mut().insert(ticket);
            return;
        }
        let mut serving = ticket + 1;
        {
            let mut early = self.done_early.borrow_mut();
            while early.remove(&serving) {
                serving += 1;
            }
        }
        self.serving.set(serving);
        self.stalled_on.set(None);
        // Waking outside the borrow: a waker may run code that takes a
        // ticket.
        let next = self.waiting.borrow_mut().remove(&serving);
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

impl Turn<'_> {
    /// Waits until every earlier ticket has been dropped.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.turns.serving.get() == self.ticket {
                Poll::Ready(())
            } else {
                self.register(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until this ticket's turn has come (`None`), or until the
    /// ticket being served says it waits for room in a peer's channel
    /// (`Some(peer)`).
    pub async fn wait_unless_stalled(&self) -> Option<usize> {
        poll_fn(|cx| {
            if self.turns.serving.get() == self.ticket {
                Poll::Ready(None)
            } else if let Some(peer) = self.turns.stalled_on.get() {
                Poll::Ready(Some(peer))
            } else {
                self.register(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// While this ticket is served: it waits for room in `peer`'s channel
    /// (`Some`), or no longer (`None`). Wakes every waiter, so those that
    /// would rather drop than wait can.
    pub fn stall(&self, peer: Option<usize>) {
        if self.turns.serving.get() != self.ticket {
            return;
        }
        self.turns.stalled_on.set(peer);
        if peer.is_some() {
            let waiting = std::mem::take(&mut *self.turns.waiting.borrow_mut());
            for (_, waker) in waiting {
                waker.wake();
            }
        }
    }

    fn register(&self, waker: &Waker) {
        self.turns
            .waiting
            .borrow_mut()
            .insert(self.ticket, waker.clone());
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.finish(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn run<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn turns_come_in_ticket_order_whatever_order_the_tasks_are_ready_in() {
        run(|| async {
            let turns = Rc::new(Turns::new());
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // Ticket i is ready to go after a delay that falls with i, so
            // later tickets are ready first.
            for i in 0..5u64 {
                let turns = turns.clone();
                let order = order.clone();
                tasks.push(glommio::spawn_local(async move {
                    let turn = turns.take();
                    glommio::timer::sleep(std::time::Duration::from_millis(10 * (5 - i))).await;
                    turn.wait().await;
                    order.borrow_mut().push(i);
                    // Still holding the turn: the next one must not run.
                    glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                    order.borrow_mut().push(i + 100);
                }));
                // Let the task take its ticket before the next is spawned.
                futures_lite::future::yield_now().await;
            }
            for task in tasks {
                task.await;
            }
            assert_eq!(
                *order.borrow(),
                vec![0, 100, 1, 101, 2, 102, 3, 103, 4, 104]
            );
            assert_eq!(turns.outstanding(), 0);
        });
    }

    #[test]
    fn a_ticket_given_up_before_its_turn_is_skipped() {
        run(|| async {
            let turns = Turns::new();
            let first = turns.take();
            let second = turns.take();
            let third = turns.take();
            assert_eq!(turns.outstanding(), 3);
            // The second gives up while the first still holds its turn.
            drop(second);
            assert_eq!(turns.outstanding(), 2);
            first.wait().await;
            drop(first);
            // The third's turn has come without the second.
            third.wait().await;
            drop(third);
            assert_eq!(turns.outstanding(), 0);
            // And the next ticket goes at once.
            let fourth = turns.take();
            fourth.wait().await;
        });
    }

    #[test]
    fn a_dropping_waiter_hears_of_a_stall_and_a_plain_one_keeps_waiting() {
        run(|| async {
            let turns = Rc::new(Turns::new());
            let first = turns.take();
            first.wait().await;
            let log = Rc::new(RefCell::new(Vec::new()));
            let plain = {
                let (turns, log) = (turns.clone(), log.clone());
                glommio::spawn_local(async move {
                    let turn = turns.take();
                    turn.wait().await;
                    log.borrow_mut().push("plain's turn");
                })
            };
            let dropping = {
                let (turns, log) = (turns.clone(), log.clone());
                glommio::spawn_local(async move {
                    let turn = turns.take();
                    let got = turn.wait_unless_stalled().await;
                    log.borrow_mut().push(match got {
                        Some(1) => "dropping heard the stall on peer 1",
                        Some(_) => "dropping heard another peer",
                        None => "dropping's turn",
                    });
                })
            };
            futures_lite::future::yield_now().await;
            assert!(log.borrow().is_empty(), "nobody runs before the first ends");
            first.stall(Some(1));
            dropping.await;
            assert_eq!(*log.borrow(), vec!["dropping heard the stall on peer 1"]);
            // The stall ends; the plain waiter still gets its turn next.
            first.stall(None);
            drop(first);
            plain.await;
            assert_eq!(
                *log.borrow(),
                vec!["dropping heard the stall on peer 1", "plain's turn"]
            );
            // A stall is the served ticket's only: a later one cannot set
            // it, and it ends with its ticket.
            let a = turns.take();
            let b = turns.take();
            b.stall(Some(0));
            a.stall(Some(0));
            drop(a);
            assert_eq!(b.wait_unless_stalled().await, None);
        });
    }

    #[test]
    fn a_task_cancelled_while_waiting_passes_its_turn_on() {
        run(|| async {
            let turns = Rc::new(Turns::new());
            let first = turns.take();
            let waiter = {
                let turns = turns.clone();
                glommio::spawn_local(async move {
                    let turn = turns.take();
                    turn.wait().await;
                })
            };
            futures_lite::future::yield_now().await;
            // Cancel the waiting task: its ticket is given up.
            waiter.cancel().await;
            drop(first);
            let next = turns.take();
            next.wait().await;
            assert_eq!(turns.outstanding(), 1);
        });
    }
}
