//! The launch test's decisions, pure: from the account's AMIs and test instances (with their
//! status checks and, where needed, console output) to one step per AMI or instance.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::domain::model::{Image, ImageState};
use crate::domain::policy::{Policy, PolicyDocument, Validate};
use crate::domain::tags;
use crate::ports::{LaunchSpec, TestInstance};

/// What to do about one AMI's launch test.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Launch the test instance.
    Launch(LaunchSpec),
    /// The test runs: wait (why).
    Wait { instance_id: String, why: String },
    /// It passed: tag the AMI `passed`, terminate the instance.
    Pass { instance_id: String },
    /// It failed: tag the AMI `failed`, terminate the instance (if there is one).
    Fail {
        instance_id: Option<String>,
        reason: String,
    },
    /// A test instance with no test left to run: terminate it.
    Terminate { instance_id: String, reason: String },
    /// Not tested, and why (an older AMI a newer one superseded).
    Skip(String),
    /// Not launched, as configured, on any sweep (a configuration error, not the AMI's: no
    /// verdict is written, and the refusal fails each sweep until the configuration changes).
    Refuse(String),
}

/// One step with what it is about.
#[derive(Debug, Clone)]
pub struct Planned<'a> {
    pub image_id: String,
    /// The policy that validates the AMI (none for a leftover instance of an unknown AMI).
    pub policy: Option<&'a Policy>,
    pub family: Option<String>,
    pub step: Step,
}

/// How long after its test's timeout a test instance's dead-man schedule terminates it: the
/// sweep judges and terminates it first (every 5 minutes); this holds when the function does not.
pub const DEAD_MAN_GRACE_MINUTES: u32 = 10;

/// A test instance of no validating policy of this document still running this long after its
/// launch is abandoned: longer than the longest `timeout_minutes` (240) with a sweep's margin.
pub const ABANDONED_AFTER_MINUTES: i64 = 255;

/// What RunInstances is called with for the AMI.
pub fn launch_spec(image: &Image, policy: &Policy, v: &Validate, attempt: u32) -> LaunchSpec {
    let tags = BTreeMap::from([
        (tags::VALIDATES.to_string(), image.id.clone()),
        (tags::POLICY.to_string(), policy.name.clone()),
        (tags::CREATED_BY.to_string(), super::FUNCTION.to_string()),
        ("Name".to_string(), format!("validate-{}", image.id)),
    ]);
    LaunchSpec {
        image_id: image.id.clone(),
        instance_type: v.instance_type.clone(),
        subnet_id: v.subnet_id.clone(),
        security_group_ids: v.security_group_ids.clone(),
        instance_profile: v.instance_profile.clone(),
        // Sealed at launch (crate::domain::seal::launch): one test instance per AMI, however
        // often the event is delivered, and the proof that the stack launched it.
        client_token: String::new(),
        lifetime_minutes: v.timeout_minutes + DEAD_MAN_GRACE_MINUTES,
        attempt,
        tags,
    }
}

/// The test instances up (any state but `shutting-down` and `terminated`): what counts against
/// the region's `AMI_MAX_TEST_INSTANCES`.
pub fn up(instances: &[TestInstance]) -> usize {
    instances
        .iter()
        .filter(|i| !matches!(i.state.as_str(), "shutting-down" | "terminated"))
        .count()
}

/// The plan with its launches oldest AMI first (the one that has waited longest for a slot),
/// every other step before them, in its place.
pub fn launches_oldest_first<'a>(steps: Vec<Planned<'a>>, images: &[Image]) -> Vec<Planned<'a>> {
    let created = |id: &str| images.iter().find(|i| i.id == id).and_then(|i| i.created);
    let (mut launches, mut out): (Vec<Planned<'a>>, Vec<Planned<'a>>) = steps
        .into_iter()
        .partition(|p| matches!(p.step, Step::Launch(_)));
    launches.sort_by(|a, b| {
        (created(&a.image_id), &a.image_id).cmp(&(created(&b.image_id), &b.image_id))
    });
    out.extend(launches);
    out
}

/// A launch with no free slot: it waits for a later sweep, saying why. Many families built at
/// once (every source instance can be a family) are tested a few at a time, never all at once.
pub fn wait_for_slot(planned: Planned<'_>, max: usize) -> Planned<'_> {
    Planned {
        step: Step::Skip(format!(
            "waiting for a free test slot: {max} test instances at most at a time in a region (AMI_MAX_TEST_INSTANCES); a later sweep launches it"
        )),
        ..planned
    }
}

/// The instance types of the planned launches, each once.
pub fn launch_types(steps: &[Planned<'_>]) -> Vec<String> {
    let mut types: Vec<String> = steps
        .iter()
        .filter_map(|p| match &p.step {
            Step::Launch(spec) => Some(spec.instance_type.clone()),
            _ => None,
        })
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// A launch EC2 would refuse on every sweep is refused without a call, with the fix: an AMI
/// whose architecture its policy's instance type does not run (RunInstances answers
/// InvalidParameterValue, "The architecture ... of the specified instance type does not match
/// the architecture ... of the specified AMI"). It is the configuration's mistake, not the
/// AMI's: no verdict is written (a `failed` would retire the AMI, and the next sweep would fail
/// the next one of the family), and the refusal fails every sweep, so the alarm holds until the
/// configuration is fixed; the AMI is then tested as it is. `supported` maps each instance type
/// to the architectures it runs; a type, or an AMI, of unknown architecture is launched as
/// planned.
pub fn refuse_mismatched<'a>(
    steps: Vec<Planned<'a>>,
    images: &[Image],
    supported: &HashMap<String, Vec<String>>,
) -> Vec<Planned<'a>> {
    steps
        .into_iter()
        .map(|planned| {
            let Step::Launch(spec) = &planned.step else {
                return planned;
            };
            let arch = images
                .iter()
                .find(|i| i.id == spec.image_id)
                .and_then(|i| i.architecture.as_deref());
            let runs = supported
                .get(&spec.instance_type)
                .filter(|r| !r.is_empty());
            let (Some(arch), Some(runs)) = (arch, runs) else {
                return planned;
            };
            if runs.iter().any(|r| r == arch) {
                return planned;
            }
            let reason = format!(
                "not launched: its architecture {arch} does not run on {} ({}), so EC2 would refuse the launch; give policy `{}` a `validate.instance_type` that runs {arch} (allowed by ValidationInstanceTypes), or narrow its `select.architectures` to {}",
                spec.instance_type,
                runs.join(", "),
                planned.policy.map_or("", |p| p.name.as_str()),
                runs.join(", ")
            );
            Planned {
                step: Step::Refuse(reason),
                ..planned
            }
        })
        .collect()
}

/// A test whose console could not be read is not judged this sweep (its verdict would rest on
/// output never seen): its step waits, with the reason, and the next sweep reads it again; the
/// dead-man schedule still bounds the instance's life.
pub fn hold_unread<'a>(
    steps: Vec<Planned<'a>>,
    unreadable: &HashMap<String, String>,
) -> Vec<Planned<'a>> {
    steps
        .into_iter()
        .map(|planned| {
            // A timeout still fails the AMI, with the read error as its reason.
            if let Step::Fail {
                instance_id: Some(instance_id),
                reason,
            } = &planned.step
            {
                if let Some(e) = unreadable.get(instance_id) {
                    let step = Step::Fail {
                        instance_id: Some(instance_id.clone()),
                        reason: format!("{reason}; its console could not be read ({e})"),
                    };
                    return Planned { step, ..planned };
                }
            }
            let instance = match &planned.step {
                Step::Pass { instance_id } | Step::Wait { instance_id, .. } => Some(instance_id),
                _ => None,
            };
            match instance.and_then(|i| unreadable.get(i).map(|e| (i.clone(), e))) {
                Some((instance_id, e)) => Planned {
                    step: Step::Wait {
                        why: format!("its console could not be read ({e}): judged when it can be"),
                        instance_id,
                    },
                    ..planned
                },
                None => planned,
            }
        })
        .collect()
}

/// Whether the instance's console output must be read to decide: it runs with both status
/// checks `ok` and its policy wants a string in the console.
pub fn needs_console(instance: &TestInstance, v: &Validate) -> bool {
    v.console_contains.is_some() && checks_ok(instance)
}

fn checks_ok(i: &TestInstance) -> bool {
    i.state == "running"
        && i.system_status.as_deref() == Some("ok")
        && i.instance_status.as_deref() == Some("ok")
}

/// The step for an AMI whose test instance exists and no verdict yet.
pub fn judge(
    instance: &TestInstance,
    v: &Validate,
    console: Option<&str>,
    now: DateTime<Utc>,
) -> Step {
    let id = instance.instance_id.clone();
    let status = format!(
        "state {}, system status {}, instance status {}",
        instance.state,
        instance.system_status.as_deref().unwrap_or("not reported"),
        instance
            .instance_status
            .as_deref()
            .unwrap_or("not reported")
    );
    if matches!(
        instance.state.as_str(),
        "stopping" | "stopped" | "shutting-down" | "terminated"
    ) {
        return Step::Fail {
            instance_id: Some(id.clone()),
            reason: format!("the test instance {id} stopped before its checks passed ({status})"),
        };
    }
    let console_ok = match (&v.console_contains, console) {
        (None, _) => true,
        (Some(want), Some(text)) => text.contains(want.as_str()),
        (Some(_), None) => false,
    };
    if checks_ok(instance) && console_ok {
        return Step::Pass { instance_id: id };
    }
    let timeout = chrono::Duration::minutes(i64::from(v.timeout_minutes));
    // An instance without a launch time is judged by the timeout alone once EC2 reports one;
    // until then it waits (EC2 always reports LaunchTime for a launched instance).
    let elapsed = instance.launched.map(|t| now - t);
    let console_note = match &v.console_contains {
        Some(want) if checks_ok(instance) => {
            format!("; the console output does not contain `{want}`")
        }
        _ => String::new(),
    };
    if elapsed.is_some_and(|e| e > timeout) {
        return Step::Fail {
            instance_id: Some(id),
            reason: format!(
                "timed out after {} minutes: {status}{console_note}",
                v.timeout_minutes
            ),
        };
    }
    Step::Wait {
        instance_id: id,
        why: format!("{status}{console_note}"),
    }
}

/// Every step of a region's launch tests.
///
/// - An AMI of a policy with `validate` that is available, has no verdict and is not a copy
///   (copies carry their source's verdict) is launched when it is the newest of its family;
///   an older one without a verdict is superseded and never launched.
/// - An AMI with a test instance and no verdict is judged ([`judge`]).
/// - A test instance whose AMI has a verdict, is no longer available or is not a validated
///   AMI of the account is terminated.
/// - `image_ids` limits the AMIs considered (leftover instances are always terminated).
pub fn plan<'a>(
    images: &[Image],
    instances: &[TestInstance],
    consoles: &HashMap<String, String>,
    document: &'a PolicyDocument,
    policies: Option<&[String]>,
    image_ids: Option<&[String]>,
    now: DateTime<Utc>,
) -> Vec<Planned<'a>> {
    let run = Run {
        document,
        policies,
        image_ids,
        consoles,
        now,
    };
    let tests = Tests::of(instances);
    let newest = newest_candidates(images, &run);

    let mut out = Vec::new();
    let mut handled: Vec<&str> = Vec::new();
    for image in images {
        let Some((policy, v)) = run.validating(image) else {
            continue;
        };
        if image.is_copy() || image_ids.is_some_and(|ids| !ids.contains(&image.id)) {
            continue;
        }
        handled.push(image.id.as_str());
        out.extend(plan_image(&run, &tests, &newest, (image, policy, v)));
    }

    out.extend(leftovers(&run, &tests, images, &handled));
    out
}

/// One run of the launch tests: the document, the run's filters, the consoles read, the clock.
struct Run<'a, 'r> {
    document: &'a PolicyDocument,
    policies: Option<&'r [String]>,
    image_ids: Option<&'r [String]>,
    consoles: &'r HashMap<String, String>,
    now: DateTime<Utc>,
}

impl<'a> Run<'a, '_> {
    /// The image's policy and its `validate`, when the policy validates and is in the run.
    fn validating(&self, image: &Image) -> Option<(&'a Policy, &'a Validate)> {
        let policy = image.policy_in(self.document)?;
        let v = policy.validate.as_ref()?;
        self.policies
            .is_none_or(|ps| ps.contains(&policy.name))
            .then_some((policy, v))
    }
}

/// The test instances by AMI: those up (not terminated) and the last one ended, with how many
/// tests of each AMI ended.
struct Tests<'i> {
    live: BTreeMap<&'i str, Vec<&'i TestInstance>>,
    ended: BTreeMap<&'i str, &'i TestInstance>,
    ended_count: BTreeMap<&'i str, u32>,
}

impl<'i> Tests<'i> {
    fn of(instances: &'i [TestInstance]) -> Self {
        let mut tests = Tests {
            live: BTreeMap::new(),
            ended: BTreeMap::new(),
            ended_count: BTreeMap::new(),
        };
        for i in instances {
            if i.state == "terminated" {
                tests.ended.insert(i.image_id.as_str(), i);
                *tests.ended_count.entry(i.image_id.as_str()).or_default() += 1;
            } else {
                tests.live.entry(i.image_id.as_str()).or_default().push(i);
            }
        }
        tests
    }
}

/// The newest AMI of each (policy, family) that could pass: available, not failed, not
/// recalled (a recalled AMI is never launch-tested).
fn newest_candidates<'i>(
    images: &'i [Image],
    run: &Run<'_, '_>,
) -> HashMap<(String, String), &'i Image> {
    let mut newest: HashMap<(String, String), &'i Image> = HashMap::new();
    for image in images.iter().filter(|i| {
        !i.is_copy()
            && i.state == ImageState::Available
            && i.verdict() != Some(tags::FAILED)
            && !i.tags.contains_key(tags::RECALLED)
    }) {
        if let Some((policy, _)) = run.validating(image) {
            let key = (policy.name.clone(), image.family(&policy.family_by));
            let entry = newest.entry(key).or_insert(image);
            if (image.created, &image.id) > (entry.created, &entry.id) {
                *entry = image;
            }
        }
    }
    newest
}

/// The steps of one AMI's launch test: end it (a verdict, or the AMI left `available`), judge
/// its instance (and end a second one), or start it when it is its family's newest.
fn plan_image<'a>(
    run: &Run<'a, '_>,
    tests: &Tests<'_>,
    newest: &HashMap<(String, String), &Image>,
    (image, policy, v): (&Image, &'a Policy, &Validate),
) -> Vec<Planned<'a>> {
    let family = image.family(&policy.family_by);
    let mut instances = tests
        .live
        .get(image.id.as_str())
        .cloned()
        .unwrap_or_default();
    instances.sort_by(|a, b| (a.launched, &a.instance_id).cmp(&(b.launched, &b.instance_id)));
    let at = |step: Step| Planned {
        image_id: image.id.clone(),
        policy: Some(policy),
        family: Some(family.clone()),
        step,
    };

    // A `passed` no seal proves is no verdict: the AMI is tested (again), and sealed.
    if let Some(verdict) = image.verdict().filter(|v| *v != tags::UNPROVEN) {
        let reason = format!(
            "its AMI's launch test is over ({}={verdict})",
            tags::VALIDATION
        );
        return instances
            .iter()
            .map(|i| {
                at(Step::Terminate {
                    instance_id: i.instance_id.clone(),
                    reason: reason.clone(),
                })
            })
            .collect();
    }
    if image.state != ImageState::Available {
        let reason = format!("the AMI became {} during its launch test", image.state);
        return instances
            .iter()
            .map(|i| {
                at(Step::Fail {
                    instance_id: Some(i.instance_id.clone()),
                    reason: reason.clone(),
                })
            })
            .collect();
    }

    let mut rest = instances.into_iter();
    let Some(first) = rest.next() else {
        let key = (policy.name.clone(), family.clone());
        let newest = newest.get(&key).map(|n| n.id.as_str());
        return untested(run, tests, (image, policy, v), newest)
            .map(at)
            .into_iter()
            .collect();
    };
    let console = run.consoles.get(&first.instance_id).map(String::as_str);
    let mut out = vec![at(judge(first, v, console, run.now))];
    for extra in rest {
        out.push(at(Step::Terminate {
            instance_id: extra.instance_id.clone(),
            reason: format!(
                "a second test instance of {}: {} tests it",
                image.id, first.instance_id
            ),
        }));
    }
    out
}

/// The step of an AMI without a test instance up: failed when its test ended before a
/// verdict, launched when it is its family's newest, skipped (said) when a request named it.
fn untested(
    run: &Run<'_, '_>,
    tests: &Tests<'_>,
    (image, policy, v): (&Image, &Policy, &Validate),
    newest: Option<&str>,
) -> Option<Step> {
    // A verdict the stack can no longer prove came after its test ended: that test says
    // nothing now, and the next one needs a token of its own.
    let retest = image.verdict() == Some(tags::UNPROVEN);
    let attempt = 1 + tests
        .ended_count
        .get(image.id.as_str())
        .copied()
        .unwrap_or(0);
    let gone = tests.ended.get(image.id.as_str()).filter(|_| !retest);
    if let Some(gone) = gone {
        // Terminated before a verdict (by someone, or by its own shutdown): RunInstances with
        // the same client token would answer this dead instance again.
        return Some(Step::Fail {
            instance_id: None,
            reason: format!(
                "the test instance {} was terminated before its checks passed",
                gone.instance_id
            ),
        });
    }
    if newest == Some(image.id.as_str()) {
        return Some(Step::Launch(launch_spec(image, policy, v, attempt)));
    }
    run.image_ids.is_some().then(|| {
        Step::Skip(format!(
            "superseded before its launch test: only the newest AMI of family `{}` ({}) is tested",
            image.family(&policy.family_by),
            newest.unwrap_or("")
        ))
    })
}

/// Test instances of no AMI this run handled: those of this document's validating policies
/// (and in this run's), and any other still running past the longest timeout a policy can set
/// (its policy lost `validate` or was removed mid-test, or its deployment is gone: abandoned),
/// are terminated. A second deployment in the account runs its own.
fn leftovers<'a>(
    run: &Run<'a, '_>,
    tests: &Tests<'_>,
    images: &[Image],
    handled: &[&str],
) -> Vec<Planned<'a>> {
    let mut out = Vec::new();
    for (image_id, instances) in &tests.live {
        if handled.contains(image_id)
            || run
                .image_ids
                .is_some_and(|ids| !ids.iter().any(|i| i == image_id))
        {
            continue;
        }
        let known = images.iter().find(|i| i.id == *image_id);
        if known.is_some_and(|i| run.validating(i).is_none() && run.policies.is_some()) {
            continue; // another policy's test, outside this run's policies
        }
        for i in instances.iter().filter(|i| {
            let ours = i.policy.as_ref().is_some_and(|p| {
                run.document.policy(p).is_some_and(|p| p.validate.is_some())
                    && run.policies.is_none_or(|ps| ps.contains(p))
            });
            let abandoned = i
                .launched
                .is_some_and(|t| run.now - t > chrono::Duration::minutes(ABANDONED_AFTER_MINUTES));
            ours || abandoned
        }) {
            out.push(Planned {
                image_id: image_id.to_string(),
                policy: None,
                family: None,
                step: Step::Terminate {
                    instance_id: i.instance_id.clone(),
                    reason: format!(
                        "{image_id} is not an available AMI of the account with a `validate` policy: nothing left to test"
                    ),
                },
            });
        }
    }
    out
}
