//! Announcing: every event reaches the bus once, even when EventBridge does not take it at
//! first. The events it does not take (after its own retries) are parked in the outbox, and
//! each run sends the parked ones first; one refused again stays there, and the outbox's
//! redrive policy moves it to the failure queue (its alarm fires): sent again at most once,
//! never dropped silently.

use crate::domain::event::{Event, Published};
use crate::ports::{EventBus, EventSink, Outbox};

/// The bus, with the outbox when the deployment has one (`AMI_EVENT_OUTBOX_URL`).
#[derive(Debug, Clone)]
pub struct Announcer<B, O> {
    bus: B,
    outbox: Option<O>,
}

impl<B: EventBus + Sync, O: Outbox + Sync> Announcer<B, O> {
    /// Announces on `bus`, parking in `outbox`.
    pub fn new(bus: B, outbox: Option<O>) -> Self {
        Announcer { bus, outbox }
    }

    /// Publishes events that are worth nothing late, never parked: a sealed continuation
    /// expires within the hour (one sent later would be refused as a forgery), and its sender
    /// falls back to the next scheduled run when it is not taken.
    pub async fn publish_now(&self, events: Vec<Event>) -> Published {
        let (published, refused) = self.bus.send(events).await;
        Published {
            published,
            failed: refused
                .into_iter()
                .map(|(e, why)| format!("{}: {why}", e.detail_type))
                .collect(),
            ..Published::default()
        }
    }

    /// Sends what earlier runs parked; removes each event EventBridge took. What goes wrong
    /// here is the outbox's, not this run's: it is logged and said in `outbox`, and the
    /// outbox's redrive policy takes the event to the failure queue, whose alarm fires.
    async fn resend(&self, outbox: &O, report: &mut Published) {
        let parked = match outbox.parked().await {
            Ok(parked) => parked,
            Err(e) => {
                report
                    .outbox
                    .push(format!("the outbox could not be read: {e}"));
                return;
            }
        };
        if parked.is_empty() {
            return;
        }
        let events: Vec<Event> = parked.iter().map(|p| p.event.clone()).collect();
        let (_, mut refused) = self.bus.send(events).await;
        for p in parked {
            // Each refusal accounts for one parked event (two alike are told apart by count).
            let again = refused.iter().position(|(e, _)| *e == p.event);
            if let Some((_, why)) = again.map(|i| refused.swap_remove(i)) {
                report.outbox.push(format!(
                    "{} (parked by an earlier run), refused again: {why}; it goes to the failure queue",
                    p.event.detail_type
                ));
                continue;
            }
            match outbox.done(&p.receipt).await {
                Ok(()) => report.resent += 1,
                // Sent, and still parked: left to the redrive policy (the failure queue) rather
                // than sent a second time.
                Err(e) => report.outbox.push(format!(
                    "{} was sent again and could not be removed from the outbox ({e}): it goes to the failure queue",
                    p.event.detail_type
                )),
            }
        }
        for problem in &report.outbox {
            tracing::warn!(%problem, "event outbox");
        }
    }
}

impl<B: EventBus + Sync, O: Outbox + Sync> EventSink for Announcer<B, O> {
    /// The run's own events first. Only when EventBridge took them all does the run send what
    /// earlier runs parked: during an outage a parked event keeps its one resend for later.
    async fn publish(&self, events: Vec<Event>) -> Published {
        let mut report = Published::default();
        if events.is_empty() {
            return report;
        }
        let (published, refused) = self.bus.send(events).await;
        report.published = published;
        let healthy = refused.is_empty();
        for (event, why) in refused {
            let parked = match &self.outbox {
                Some(outbox) => outbox.park(&event).await.map_err(|e| e.to_string()),
                None => Err("no outbox (AMI_EVENT_OUTBOX_URL)".to_string()),
            };
            match parked {
                Ok(()) => report.parked += 1,
                Err(e) => report
                    .failed
                    .push(format!("{}: {why}; not parked: {e}", event.detail_type)),
            }
        }
        if let (true, Some(outbox)) = (healthy, &self.outbox) {
            self.resend(outbox, &mut report).await;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::error::{Error, Result};
    use crate::ports::ParkedEvent;

    /// A bus that refuses the detail types it is told to, and keeps the others.
    #[derive(Default)]
    struct Bus {
        refuse: Mutex<Vec<String>>,
        taken: Mutex<Vec<Event>>,
    }

    impl EventBus for Bus {
        async fn send(&self, events: Vec<Event>) -> (usize, Vec<(Event, String)>) {
            let refuse = self.refuse.lock().expect("lock").clone();
            let (refused, taken): (Vec<Event>, Vec<Event>) = events
                .into_iter()
                .partition(|e| refuse.contains(&e.detail_type));
            let n = taken.len();
            self.taken.lock().expect("lock").extend(taken);
            (
                n,
                refused
                    .into_iter()
                    .map(|e| (e, "ThrottlingException".into()))
                    .collect(),
            )
        }
    }

    /// An outbox in memory: a message received and not deleted is gone (the redrive policy).
    #[derive(Default)]
    struct Queue {
        messages: Mutex<Vec<(String, Event)>>,
        in_flight: Mutex<Vec<(String, Event)>>,
        broken: bool,
    }

    impl Outbox for Queue {
        async fn park(&self, event: &Event) -> Result<()> {
            if self.broken {
                return Err(Error::Refused("SendMessage failed".into()));
            }
            let mut m = self.messages.lock().expect("lock");
            let receipt = format!("r{}", m.len());
            m.push((receipt, event.clone()));
            Ok(())
        }
        async fn parked(&self) -> Result<Vec<ParkedEvent>> {
            let taken: Vec<(String, Event)> =
                self.messages.lock().expect("lock").drain(..).collect();
            self.in_flight.lock().expect("lock").extend(taken.clone());
            Ok(taken
                .into_iter()
                .map(|(receipt, event)| ParkedEvent { receipt, event })
                .collect())
        }
        async fn done(&self, receipt: &str) -> Result<()> {
            self.in_flight
                .lock()
                .expect("lock")
                .retain(|(r, _)| r != receipt);
            Ok(())
        }
    }

    fn event(detail_type: &str) -> Event {
        crate::domain::event::event(
            detail_type,
            vec![],
            serde_json::json!({"image_id": "ami-1"}),
        )
    }

    #[tokio::test]
    async fn an_event_eventbridge_does_not_take_is_parked_and_sent_once_by_the_next_run() {
        let announcer = Announcer::new(Bus::default(), Some(Queue::default()));
        *announcer.bus.refuse.lock().expect("lock") = vec!["AMI Retirement Scheduled".into()];
        let first = announcer
            .publish(vec![
                event("AMI Deprecated"),
                event("AMI Retirement Scheduled"),
            ])
            .await;
        assert_eq!(
            (first.published, first.parked, first.failed.len()),
            (1, 1, 0),
            "{first:?}"
        );

        // A run with nothing to announce says nothing of EventBridge: it leaves the outbox.
        announcer.bus.refuse.lock().expect("lock").clear();
        let quiet = announcer.publish(vec![]).await;
        assert_eq!(quiet.resent, 0, "{quiet:?}");
        // The next run EventBridge takes everything of sends it, once.
        let next = announcer.publish(vec![event("AMI Shared")]).await;
        assert_eq!((next.resent, next.failed.len()), (1, 0), "{next:?}");
        let taken = announcer.bus.taken.lock().expect("lock").clone();
        assert_eq!(
            taken
                .iter()
                .filter(|e| e.detail_type == "AMI Retirement Scheduled")
                .count(),
            1
        );
        let again = announcer.publish(vec![event("AMI Shared")]).await;
        assert_eq!(again.resent, 0, "sent once");
    }

    #[tokio::test]
    async fn a_parked_event_refused_again_is_a_failure_and_one_that_cannot_be_parked_is_lost_loudly(
    ) {
        let announcer = Announcer::new(Bus::default(), Some(Queue::default()));
        *announcer.bus.refuse.lock().expect("lock") = vec!["AMI Shared".into()];
        let during = announcer
            .publish(vec![event("AMI Shared"), event("AMI Shared")])
            .await;
        assert_eq!(during.parked, 2, "{during:?}");
        // While EventBridge refuses this run's own events, the parked ones keep their resend.
        let still = announcer.publish(vec![event("AMI Shared")]).await;
        assert_eq!((still.parked, still.outbox.len()), (1, 0), "{still:?}");
        // EventBridge takes everything again: the three parked are sent.
        *announcer.bus.refuse.lock().expect("lock") = vec![];
        let ok = announcer.publish(vec![event("AMI Deprecated")]).await;
        assert_eq!(ok.resent, 3, "{ok:?}");
        *announcer.bus.refuse.lock().expect("lock") = vec!["AMI Retirement Scheduled".into()];
        announcer
            .publish(vec![event("AMI Retirement Scheduled")])
            .await;
        // EventBridge takes this run's own event and refuses the parked one again.
        let next = announcer.publish(vec![event("AMI Deprecated")]).await;
        assert!(next.failed.is_empty(), "not this run's failure: {next:?}");
        assert_eq!(next.outbox.len(), 1, "{next:?}");
        assert!(next.outbox[0].contains("refused again"), "{next:?}");
        assert!(
            announcer
                .outbox
                .as_ref()
                .expect("outbox")
                .messages
                .lock()
                .expect("lock")
                .is_empty(),
            "left to the redrive policy, never sent a second time"
        );

        let broken = Announcer::new(
            Bus::default(),
            Some(Queue {
                broken: true,
                ..Queue::default()
            }),
        );
        *broken.bus.refuse.lock().expect("lock") = vec!["AMI Shared".into()];
        let lost = broken.publish(vec![event("AMI Shared")]).await;
        assert_eq!((lost.parked, lost.failed.len()), (0, 1), "{lost:?}");
        // A continuation is worth nothing late: never parked.
        let now = Announcer::new(Bus::default(), Some(Queue::default()));
        *now.bus.refuse.lock().expect("lock") = vec!["Policy Run Continued".into()];
        let refused = now.publish_now(vec![event("Policy Run Continued")]).await;
        assert_eq!(
            (refused.parked, refused.failed.len()),
            (0, 1),
            "{refused:?}"
        );
        assert!(now
            .outbox
            .as_ref()
            .expect("outbox")
            .messages
            .lock()
            .expect("lock")
            .is_empty());
        let none = Announcer::<Bus, Queue>::new(Bus::default(), None);
        *none.bus.refuse.lock().expect("lock") = vec!["AMI Shared".into()];
        let lost = none.publish(vec![event("AMI Shared")]).await;
        assert!(lost.failed[0].contains("no outbox"), "{lost:?}");
    }
}
