//! The rounds of a region's real run: each plans over what is read so far, gathers the evidence
//! its new decisions need, and executes what no earlier round did, while the reads go on.

use std::collections::HashSet;

use chrono::Utc;
use futures::StreamExt;

use super::reports::{request_reports, ReportRoom};
use super::scan::{Answer, Scanned, Tally, READ_CHUNK};
use super::{execute, Action, ActionKind, ActionReport, Outcome, Plan, RegionReport, RegionRun};
use crate::ports::{ConsumerUsage, ImageInventory, Pace, RetireImages};

/// The evidence calls already made, so that no round asks twice.
#[derive(Default)]
struct Asked {
    consumer_reports: HashSet<String>,
    references: HashSet<String>,
    new_reports: HashSet<String>,
}

/// The ids of `wanted` not in `asked`, which now holds them.
pub(super) fn not_asked(wanted: &[String], asked: &mut HashSet<String>) -> Vec<String> {
    wanted
        .iter()
        .filter(|id| asked.insert((*id).clone()))
        .cloned()
        .collect()
}

/// An action's identity across rounds: its kind and the image or snapshot it changes.
pub(super) fn action_key(a: &Action) -> (ActionKind, String) {
    let id = match a.kind {
        ActionKind::DeleteSnapshot => &a.snapshot_id,
        _ => &a.image_id,
    };
    (a.kind, id.clone().unwrap_or_default())
}

/// The rounds of a region's run.
pub(super) struct Rounds<'r, 's, E, P> {
    ec2: &'r E,
    pacer: &'r P,
    /// Paces the usage reports asked, apart from the retirements.
    report_pacer: &'r P,
    /// What is left of EC2's quota of usage reports in progress.
    report_room: ReportRoom,
    run: &'r RegionRun<'r>,
    scanned: &'r mut Scanned<'s>,
    asked: Asked,
    /// Every action a round reported (done, failed, deferred ...): never started again.
    done: HashSet<(ActionKind, String)>,
    /// The orphaned snapshots reported.
    orphans: HashSet<String>,
    /// AMIs whose deregistration a round reported and did not do (deferred or failed).
    undone: HashSet<String>,
    out: &'r mut RegionReport,
}

impl<'r, 's, E: ImageInventory + ConsumerUsage + RetireImages + Sync, P: Pace + Sync>
    Rounds<'r, 's, E, P>
{
    /// The rounds of `run` over what `scanned` holds, reporting into `out`.
    pub(super) fn new(
        ec2: &'r E,
        (pacer, report_pacer): (&'r P, &'r P),
        run: &'r RegionRun<'r>,
        scanned: &'r mut Scanned<'s>,
        out: &'r mut RegionReport,
    ) -> Self {
        Rounds {
            ec2,
            pacer,
            report_pacer,
            report_room: ReportRoom::Uncounted,
            run,
            scanned,
            asked: Asked::default(),
            done: HashSet::new(),
            orphans: HashSet::new(),
            undone: HashSet::new(),
            out,
        }
    }

    /// Runs rounds until the reads are over and everything read is planned (or the deadline
    /// has passed); returns the last plan, whose kept images are the run's (the kept snapshots
    /// and orphans are gathered round by round).
    pub(super) async fn until_all_read(
        mut self,
        mut answers: futures::channel::mpsc::UnboundedReceiver<Vec<Answer>>,
    ) -> Plan {
        let pipelined = !self.run.dry_run;
        let (mut reads_over, mut fresh) = (false, true);
        // Answers planned by a round, and read since the last one.
        let (mut planned, mut waiting) = (Tally::default(), Tally::default());
        let mut last = Plan::default();
        let mut rounds = 0usize;
        loop {
            // Past the deadline a real run starts no round (it would only read evidence for
            // actions it must defer), once it has planned.
            let closed = pipelined && rounds > 0 && self.run.deadline.passed();
            if fresh && !closed && (reads_over || pipelined) {
                rounds += 1;
                last = self.round().await;
                planned.add(waiting);
                (waiting, fresh) = (Tally::default(), false);
            }
            // A dry run plans once, after every read.
            if reads_over || (pipelined && self.run.deadline.passed()) {
                return last;
            }
            // The next round waits for as many AMIs found not shared as the rounds before had
            // (up to a chunk's worth), or for as many answers in all as the rounds before had:
            // a run whose candidates are mostly shared plans a few times, not once per chunk.
            let ready = |w: &Tally| {
                pipelined
                    && (w.not_shared >= planned.not_shared.clamp(1, READ_CHUNK)
                        || w.answers >= planned.answers.max(READ_CHUNK))
            };
            while !ready(&waiting) && !reads_over {
                match answers.next().await {
                    Some(got) => {
                        waiting.add(self.scanned.apply(got));
                        fresh = true;
                    }
                    None => reads_over = true,
                }
            }
            // And whatever else is ready.
            while !reads_over {
                match answers.try_recv() {
                    Ok(got) => {
                        waiting.add(self.scanned.apply(got));
                        fresh = true;
                    }
                    Err(e) if e.is_closed() => reads_over = true,
                    Err(_) => break,
                }
            }
        }
    }

    /// Plans over what is known, gathers the evidence the new decisions need, and executes
    /// what no earlier round did.
    async fn round(&mut self) -> Plan {
        let planned = self.settle().await;
        self.note_orphans(&planned);
        let new: Vec<Action> = planned
            .actions
            .iter()
            .filter(|a| self.done.insert(action_key(a)))
            .cloned()
            .collect();
        self.ask_usage_reports(&planned).await;
        self.note_snapshots_kept(&planned, &new);
        if new.is_empty() {
            return planned;
        }

        tracing::info!(region = %self.run.region, actions = new.len(), kept = planned.kept.len(),
            dry_run = self.run.dry_run, "age-out round planned");
        // An AMI whose deregistration an earlier round left undone (deferred or failed) is
        // still registered, and still uses its snapshots: none of them is deleted in this run
        // (the planner counts it as deregistered, since it plans that).
        let (held, new) = self.hold_snapshots_of_undone(new);
        let mut round = Plan {
            actions: new,
            ..Plan::default()
        };
        let mut reports = execute(&mut round, self.run, (self.ec2, self.pacer), &Utc::now).await;
        reports.extend(held);
        self.note_gone(&reports);
        self.out.plan.extend(reports);
        planned
    }

    /// Orphans found, each once. A snapshot whose deletion an earlier round reported (deferred
    /// or failed) looks orphaned once its AMI is gone: it is that AMI's snapshot, reported with
    /// it, not an orphan.
    fn note_orphans(&mut self, planned: &Plan) {
        for orphan in &planned.orphans {
            let reported = self
                .done
                .contains(&(ActionKind::DeleteSnapshot, orphan.snapshot_id.clone()));
            if !reported && self.orphans.insert(orphan.snapshot_id.clone()) {
                self.out.orphans.push(orphan.clone());
            }
        }
    }

    /// Asks for the usage reports the plan wants that no round asked for yet.
    async fn ask_usage_reports(&mut self, planned: &Plan) {
        let to_request = not_asked(
            &planned.usage_reports_to_request,
            &mut self.asked.new_reports,
        );
        let requested = request_reports(
            self.ec2,
            self.report_pacer,
            self.run,
            self.scanned.depth,
            &to_request,
            &mut self.report_room,
            &mut self.scanned.usage.gaps,
        )
        .await;
        self.out.usage_reports.extend(requested);
    }

    /// The snapshots kept of the AMIs this round deregisters (a later round plans without
    /// those AMIs, so it would not say).
    fn note_snapshots_kept(&mut self, planned: &Plan, new: &[Action]) {
        let deregistering: HashSet<&str> = new
            .iter()
            .filter(|a| a.kind == ActionKind::Deregister)
            .filter_map(|a| a.image_id.as_deref())
            .collect();
        self.out.snapshots_kept.extend(
            planned
                .snapshots_kept
                .iter()
                .filter(|k| deregistering.contains(k.image_id.as_str()))
                .cloned(),
        );
    }

    /// What is gone from the account (later rounds plan without it), and the deregistrations
    /// not done.
    fn note_gone(&mut self, reports: &[ActionReport]) {
        let gone = &mut self.scanned.usage.gone;
        for r in reports {
            if r.action.kind == ActionKind::Deregister
                && matches!(
                    r.outcome,
                    Outcome::Deferred | Outcome::Failed | Outcome::Skipped
                )
            {
                self.undone.extend(r.action.image_id.clone());
            }
            let removed = match r.action.kind {
                ActionKind::Deregister => matches!(r.outcome, Outcome::Done | Outcome::AlreadyDone)
                    .then_some(&r.action.image_id),
                ActionKind::DeleteSnapshot => matches!(
                    r.outcome,
                    Outcome::Done | Outcome::AlreadyDone | Outcome::DeletedWithImage
                )
                .then_some(&r.action.snapshot_id),
                _ => None,
            };
            if let Some(Some(id)) = removed {
                gone.insert(id.clone());
            }
        }
    }

    /// Splits off the snapshot deletions of `actions` that an AMI whose deregistration an
    /// earlier round left undone still needs, reported as deferred (the next run plans again).
    pub(super) fn hold_snapshots_of_undone(
        &self,
        actions: Vec<Action>,
    ) -> (Vec<ActionReport>, Vec<Action>) {
        if self.undone.is_empty() {
            return (Vec::new(), actions);
        }
        let needed: HashSet<&str> = self
            .scanned
            .images
            .iter()
            .filter(|i| self.undone.contains(&i.id))
            .flat_map(|i| i.snapshot_ids.iter().map(String::as_str))
            .collect();
        let (held, go): (Vec<Action>, Vec<Action>) = actions.into_iter().partition(|a| {
            a.kind == ActionKind::DeleteSnapshot
                && a.snapshot_id.as_deref().is_some_and(|s| needed.contains(s))
        });
        let held = held
            .into_iter()
            .map(|action| ActionReport {
                action,
                region: self.run.region.clone(),
                outcome: Outcome::Deferred,
                error_code: None,
                error: Some(
                    "an AMI whose deregistration this run left undone still uses it".into(),
                ),
            })
            .collect();
        (held, go)
    }

    /// Plans, then reads the evidence that the decisions wait on and that no round asked for
    /// yet (the usage reports of shared images it would change, then the references of every
    /// image it would change), and plans again, until a plan waits on nothing new.
    pub(super) async fn settle(&mut self) -> Plan {
        loop {
            let planned = self.scanned.plan();
            let reports = not_asked(
                &planned.consumer_reports_needed,
                &mut self.asked.consumer_reports,
            );
            let references = not_asked(&planned.acted_images(), &mut self.asked.references);
            if reports.is_empty() && references.is_empty() {
                return planned;
            }
            // Each pass's plan is dropped before the next is made: a large plan is never held
            // twice.
            drop(planned);
            if !reports.is_empty() {
                self.scanned.read_consumer_reports(self.ec2, reports).await;
            }
            if !references.is_empty() {
                self.scanned.read_references(self.ec2, references).await;
            }
        }
    }
}
