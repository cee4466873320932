//! The failover phase: SIGKILL the leader of a partition an idempotent producer writes to,
//! and time how long until a write goes through a new leader, with what can be seen of the
//! steps between.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, NODES, Probes};
use crate::common::broker::Broker;
use crate::common::clients::{self, TopicSpec};
use crate::wire::{KafkaConnection, NodeView, PartitionView};
use crate::writer::{Writer, utc_time_of_day};
use crate::{Settings, TOPIC_FAILOVER};

/// How long a trial may take, from the kill to the first write through the new leader.
const TRIAL_WAIT: Duration = Duration::from_secs(60);
/// How often the surviving nodes are asked for their metadata during a trial.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How long the probe waits after a refused write before the next.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// How long the cluster is left alone after the ISR is full again, before the next kill.
const SETTLE: Duration = Duration::from_secs(2);

/// What one trial saw, times measured from the SIGKILL.
#[derive(Debug, Clone)]
pub(crate) struct Trial {
    /// The node killed: the partition's leader.
    pub(crate) killed: i32,
    /// Whether it was the active controller too.
    pub(crate) killed_controller: bool,
    /// When a surviving node first named another active controller (only if the killed node
    /// was the active controller).
    pub(crate) new_controller: Option<Duration>,
    /// When the active controller logged that it fenced the killed node.
    pub(crate) fenced: Option<Duration>,
    /// The new leader, and when a surviving node's Metadata first named it.
    pub(crate) new_leader: i32,
    pub(crate) leader_visible: Duration,
    /// When the other surviving node logged that it follows the new leader.
    pub(crate) following: Option<Duration>,
    /// When a one-record acks=all Produce sent straight to the new leader (from when a
    /// survivor first named it, again every few milliseconds until one succeeds) was
    /// acknowledged: when the new leader took writes, whatever the writer's librdkafka knew
    /// by then (`None` if none succeeded within [`TRIAL_WAIT`]).
    pub(crate) probe: Option<Duration>,
    /// When librdkafka acknowledged the first record written after the kill: necessarily
    /// through the new leader.
    pub(crate) first_write: Duration,
    /// From starting the killed node again until every node said the ISR was full.
    pub(crate) rejoined: Duration,
}

/// What the phase measured.
#[derive(Debug, Clone)]
pub(crate) struct Failover {
    pub(crate) trials: Vec<Trial>,
    pub(crate) rate: u32,
    /// The producer's librdkafka settings besides its defaults and idempotence.
    pub(crate) producer_settings: Vec<(String, String)>,
    /// Records the writer had acknowledged, all of them, by the end.
    pub(crate) records: u64,
}

/// Runs `settings.failover_trials` trials on `cluster`.
pub(crate) fn run(cluster: &mut Cluster, settings: &Settings) -> Failover {
    let bootstrap = cluster.bootstrap();
    clients::create_topics(
        &bootstrap,
        &[TopicSpec {
            name: TOPIC_FAILOVER,
            replication_factor: NODES,
            min_insync_replicas: Some(2),
        }],
    );
    let mut probes = Probes::default();
    cluster.wait_full_isr(&mut probes, TOPIC_FAILOVER);
    let client_log = settings.logs_dir.as_ref().map(|dir| {
        let path = dir.join("producer.log");
        std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
    });
    let writer = Writer::start(
        &bootstrap,
        TOPIC_FAILOVER,
        settings.failover_rate,
        client_log,
        &settings.failover_producer,
    );
    writer.wait_for_delivery();
    let mut trials = Vec::new();
    for number in 1..=settings.failover_trials {
        let trial = run_trial(cluster, &mut probes, &writer, number);
        eprintln!(
            "trial {number}: killed node {}{}, first write through node {} after {} ms",
            trial.killed,
            if trial.killed_controller {
                " (the active controller)"
            } else {
                ""
            },
            trial.new_leader,
            trial.first_write.as_millis()
        );
        trials.push(trial);
    }
    let records = writer.finish();
    Failover {
        trials,
        rate: settings.failover_rate,
        producer_settings: settings.failover_producer.clone(),
        records,
    }
}

/// One trial: waits for a full ISR and a steady writer, kills the leader, watches, and
/// starts the killed node again.
fn run_trial(cluster: &mut Cluster, probes: &mut Probes, writer: &Writer, number: u32) -> Trial {
    let before = cluster.wait_full_isr(probes, TOPIC_FAILOVER);
    std::thread::sleep(SETTLE);
    writer.wait_for_delivery();
    let partition = before.partition.expect("a full ISR has a partition");
    let killed = partition.leader;
    let killed_controller = before.controller == killed;
    // Where each survivor's log is now: what it logs from here on is about this trial.
    let log_marks: Vec<(i32, u64)> = (1..=NODES)
        .filter(|&id| id != killed)
        .map(|id| (id, running(cluster, id).log().next_number()))
        .collect();
    let note = format!(
        "{} trial {number}: SIGKILL node {killed}, the leader at epoch {}{}",
        utc_time_of_day(),
        partition.leader_epoch,
        if killed_controller {
            " and the active controller"
        } else {
            ""
        }
    );
    cluster.mark(&note);
    writer.mark(&note);

    let killed_at = Instant::now();
    cluster.kill(killed);
    writer.watch_from_now();
    let seen = watch(
        cluster,
        probes,
        writer,
        killed_at,
        &partition,
        killed_controller,
    );
    cluster.mark(&format!(
        "{} trial {number}: the first write through node {} was acknowledged",
        utc_time_of_day(),
        seen.new_leader
    ));
    let logged = |matches: &dyn Fn(&str) -> bool| {
        log_marks.iter().find_map(|&(id, from)| {
            let line = running(cluster, id).log().find(from, matches);
            line.map(|(at, _)| at.saturating_duration_since(killed_at))
        })
    };
    let fenced_field = format!("broker_id={killed}");
    let fenced = logged(&|line| {
        // Its session stream closed (the usual case), or it missed its heartbeats.
        (line.contains("session stream closed") || line.contains("session expired"))
            && has_field(line, &fenced_field)
    });
    let leader_field = format!("leader={}", seen.new_leader);
    let epoch_field = format!("leader_epoch={}", seen.new_epoch);
    let following = logged(&|line| {
        line.contains(" following ")
            && has_field(line, &leader_field)
            && has_field(line, &epoch_field)
    });

    let restarted_at = Instant::now();
    cluster.restart(killed);
    cluster.wait_full_isr(probes, TOPIC_FAILOVER);
    Trial {
        killed,
        killed_controller,
        new_controller: seen.new_controller,
        fenced,
        new_leader: seen.new_leader,
        leader_visible: seen.leader_visible,
        following,
        probe: seen.probe,
        first_write: seen.first_write,
        rejoined: restarted_at.elapsed(),
    }
}

/// What a trial saw of the survivors and the writer after the kill.
#[derive(Debug)]
struct Seen {
    new_controller: Option<Duration>,
    new_leader: i32,
    new_epoch: i32,
    leader_visible: Duration,
    probe: Option<Duration>,
    first_write: Duration,
}

/// Asks the survivors for their metadata every [`POLL_INTERVAL`] after the leader `before`
/// was killed at `killed_at`, probes the new leader once one is named, and returns once the
/// writer had a record sent after the kill acknowledged (and, if the killed node was the
/// active controller, a survivor named a new one); panics after [`TRIAL_WAIT`].
fn watch(
    cluster: &Cluster,
    probes: &mut Probes,
    writer: &Writer,
    killed_at: Instant,
    before: &PartitionView,
    killed_controller: bool,
) -> Seen {
    let killed = before.leader;
    let mut new_controller = None;
    let mut leader_seen: Option<(Duration, i32, i32)> = None;
    let mut probe = None;
    loop {
        for (_, view) in cluster.views(probes, TOPIC_FAILOVER) {
            let Ok(view) = view else { continue };
            let now = killed_at.elapsed();
            if killed_controller && new_controller.is_none() && is_other_controller(&view, killed) {
                new_controller = Some(now);
            }
            if leader_seen.is_none()
                && let Some(p) = &view.partition
                && p.leader > 0
                && p.leader != killed
                && p.leader_epoch > before.leader_epoch
            {
                leader_seen = Some((now, p.leader, p.leader_epoch));
                let address = cluster.node(p.leader).kafka_addr();
                probe = Some(std::thread::spawn(move || probe_write(&address, killed_at)));
            }
        }
        writer.check_no_failure();
        if let (Some(written), Some((leader_visible, new_leader, new_epoch))) =
            (writer.first_watched(), leader_seen)
            && (!killed_controller || new_controller.is_some())
        {
            let probe = probe
                .and_then(|thread| thread.join().ok())
                .flatten()
                .map(|at| at.saturating_duration_since(killed_at));
            return Seen {
                new_controller,
                new_leader,
                new_epoch,
                leader_visible,
                probe,
                first_write: written.saturating_duration_since(killed_at),
            };
        }
        assert!(
            killed_at.elapsed() < TRIAL_WAIT,
            "no write through a new leader within {TRIAL_WAIT:?} of killing node {killed}; the \
             nodes say {:?}",
            cluster.views(probes, TOPIC_FAILOVER)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Node `id`'s process, which runs.
fn running(cluster: &Cluster, id: i32) -> &Broker {
    cluster.node(id).process().expect("a survivor runs")
}

/// Sends a one-record acks=all Produce to the leader at `address`, again every
/// [`PROBE_INTERVAL`] until one is acknowledged, and returns when; `None` if none is by
/// [`TRIAL_WAIT`] after `killed_at`.
fn probe_write(address: &str, killed_at: Instant) -> Option<Instant> {
    let mut leader = KafkaConnection::new(address);
    while killed_at.elapsed() < TRIAL_WAIT {
        if leader.produce_one(TOPIC_FAILOVER).is_ok() {
            return Some(Instant::now());
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    None
}

/// Whether `view` names an active controller other than `killed`.
fn is_other_controller(view: &NodeView, killed: i32) -> bool {
    view.controller > 0 && view.controller != killed
}

/// Whether a log line has the field `name=value` exactly (`field` is `name=value`).
fn has_field(line: &str, field: &str) -> bool {
    line.split_whitespace().any(|f| f == field)
}
