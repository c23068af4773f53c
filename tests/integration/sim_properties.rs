//! Property tests on the simulator: whatever sequence of calls, free GPU
//! counts stay within bounds and only Running time is billed.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use mdc_autoscaler::cloud::{InstanceStatus, StatusMap, wire};
use mdc_autoscaler::money::Money;
use mdc_autoscaler::sim::fleet::FleetFile;
use mdc_autoscaler::sim::{Phase, Simulator};
use proptest::prelude::*;

use crate::harness::start_time;

/// One pool of 4 GPUs; a 1-GPU SKU at 3.60/h (1,000 micro-yuan a second), a
/// 2-GPU one at 7.20/h, and a 1-GPU one with a discount window.
const FLEET: &str = r#"
platform: { create_time: 7s, start_time: 5s, stop_time: 3s, snapshot_time: 4s, delete_time: 2s, power_on_without_gpu: wait }
regions:
  - { id: r1, name: R1, cluster: c1, gpus: { nvidia.com/gpu-x: 4 } }
skus:
  - { id: one, region: r1, name: X, gpu_product: X, gpu_resource_key: nvidia.com/gpu-x, gpu_count: 1, gpu_memory_gb: 24, cpu_cores: 8, memory_gb: 64, price: 3.6 }
  - { id: two, region: r1, name: X2, gpu_product: X, gpu_resource_key: nvidia.com/gpu-x, gpu_count: 2, gpu_memory_gb: 24, cpu_cores: 16, memory_gb: 128, price: 7.2 }
"#;

const TOTAL_GPUS: u32 = 4;

#[derive(Clone, Debug)]
enum Op {
    Create { sku: usize, prepaid: bool },
    PowerOff { which: usize, snapshot: bool },
    PowerOn { which: usize },
    Delete { which: usize },
    Wait { seconds: u32 },
    SnapshotsFail,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, any::<bool>()).prop_map(|(sku, p)| Op::Create { sku, prepaid: p && sku == 0 }),
        3 => (0..8usize, any::<bool>()).prop_map(|(which, snapshot)| Op::PowerOff { which, snapshot }),
        3 => (0..8usize).prop_map(|which| Op::PowerOn { which }),
        2 => (0..8usize).prop_map(|which| Op::Delete { which }),
        4 => (1..40u32).prop_map(|seconds| Op::Wait { seconds }),
        1 => Just(Op::SnapshotsFail),
    ]
}

fn body(sku: &str, prepaid: bool, n: usize) -> wire::CreateBody {
    wire::CreateBody {
        cost: wire::CreateCost {
            cost_type: if prepaid { "4".into() } else { "1".into() },
            disk_sku_id: "1".into(),
            gpu_sku_id: sku.into(),
            cost_time: if prepaid { "1D".into() } else { String::new() },
            ..Default::default()
        },
        namespace: "ns".into(),
        display_name: format!("p{n}"),
        image: "img".into(),
        ..Default::default()
    }
}

struct Observer {
    names: Vec<String>,
    /// Seconds each pay-as-you-go instance was seen Running, sampled every second.
    running_seconds: BTreeMap<String, i64>,
    prepaid: Vec<String>,
}

impl Observer {
    /// Samples every whole second from `from` to `to`: every call and every
    /// transition time is a whole second, so the state holds for the second.
    fn tick(&mut self, sim: &mut Simulator, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut t = from;
        while t < to {
            sim.advance(t);
            check_pools(sim);
            for instance in sim.instances() {
                if instance.phase == Phase::Running && !self.prepaid.contains(&instance.name) {
                    *self.running_seconds.entry(instance.name.clone()).or_default() += 1;
                }
            }
            t += Duration::seconds(1);
        }
        sim.advance(to);
    }
}

fn check_pools(sim: &Simulator) {
    let in_use = sim.gpus_in_use("r1", "nvidia.com/gpu-x");
    assert!(in_use <= TOTAL_GPUS, "{in_use} GPUs in use of {TOTAL_GPUS}");
    let held: u32 = sim.instances().filter(|i| i.holds_gpu).map(|i| if i.sku_id == "two" { 2 } else { 1 }).sum();
    assert_eq!(in_use, held);
    for i in sim.instances() {
        let may_hold = matches!(i.phase, Phase::Creating | Phase::Starting | Phase::Running | Phase::Stopping { .. });
        assert!(!i.holds_gpu || may_hold, "{} holds a GPU while {:?}", i.name, i.phase);
        if matches!(i.phase, Phase::Running | Phase::Creating | Phase::Stopping { .. }) {
            assert!(i.holds_gpu, "{} is {:?} without a GPU", i.name, i.phase);
        }
    }
    for sku in sim.skus() {
        assert_eq!(sim.free_gpus(sku), TOTAL_GPUS - in_use);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn gpus_stay_in_bounds_and_only_running_time_is_billed(ops in prop::collection::vec(op(), 1..40)) {
        let fleet = FleetFile::parse("props", FLEET).unwrap();
        let mut sim = fleet.build("ns", start_time()).unwrap();
        let mut now = start_time();
        let mut seen = Observer { names: vec![], running_seconds: BTreeMap::new(), prepaid: vec![] };
        let statuses = StatusMap::default();
        for (n, op) in ops.into_iter().enumerate() {
            let name = |which: usize| seen.names.get(which % seen.names.len().max(1)).cloned();
            match op {
                Op::Create { sku, prepaid } => {
                    let sku = ["one", "two"][sku];
                    if let Ok(created) = sim.create_instance(now, "c1", &body(sku, prepaid, n)) {
                        prop_assert_eq!(created.into_domain(&statuses).unwrap().status, InstanceStatus::Creating);
                        if prepaid { seen.prepaid.push(created_name(&sim, n)); }
                        seen.names.push(created_name(&sim, n));
                    }
                }
                Op::PowerOff { which, snapshot } => if let Some(name) = name(which) {
                    let body = wire::PowerOffBody { need_snapshot: snapshot, ..Default::default() };
                    let _ = sim.power_off(now, "c1", &name, &body);
                },
                Op::PowerOn { which } => if let Some(name) = name(which) { let _ = sim.power_on(now, "c1", &name); },
                Op::Delete { which } => if let Some(name) = name(which) { let _ = sim.delete_instance(now, "c1", &name); },
                Op::Wait { seconds } => {
                    let to = now + Duration::seconds(seconds as i64);
                    seen.tick(&mut sim, now, to);
                    now = to;
                }
                Op::SnapshotsFail => sim.faults.fail_next_snapshots += 1,
            }
            check_pools(&sim);
        }
        let end = now + Duration::seconds(60);
        seen.tick(&mut sim, now, end);
        let bill = sim.bill();
        for line in &bill.instances {
            let observed = seen.running_seconds.get(&line.name).copied().unwrap_or(0);
            prop_assert_eq!(line.running_seconds, observed, "running time of {}", line.name);
            // 1,000 micro-yuan a second per GPU; prepaid instances pay no compute.
            let per_second = if seen.prepaid.contains(&line.name) { 0 } else if line.sku_id == "two" { 2_000 } else { 1_000 };
            prop_assert_eq!(line.compute, Money::from_micros(observed * per_second), "compute of {}", line.name);
            if seen.prepaid.contains(&line.name) {
                prop_assert_eq!(line.prepaid, Money::from_yuan_f64(3.6 * 24.0).unwrap());
            }
        }
    }
}

fn created_name(sim: &Simulator, n: usize) -> String {
    sim.instances().find(|i| i.display_name == format!("p{n}")).unwrap().name.clone()
}

#[test]
fn billing_follows_the_discount_window_to_the_second() {
    let fleet = FleetFile::parse(
        "discount",
        r#"
platform: { create_time: 0s }
regions: [{ id: r1, name: R1, cluster: c1, gpus: { nvidia.com/gpu-x: 1 } }]
skus:
  - id: one
    region: r1
    name: X
    gpu_product: X
    gpu_resource_key: nvidia.com/gpu-x
    gpu_count: 1
    gpu_memory_gb: 24
    cpu_cores: 8
    memory_gb: 64
    price: 10
    discount: { id: d, ratio: 0.48, start: "2026-11-27T11:00:00+08:00", end: "2026-11-27T13:00:00+08:00" }
"#,
    )
    .unwrap();
    // 10:00 Beijing.
    let mut sim = fleet.build("ns", start_time()).unwrap();
    sim.create_instance(start_time(), "c1", &body("one", false, 0)).unwrap();
    let end = start_time() + Duration::hours(4);
    sim.advance(end);
    let bill = sim.bill();
    // 1h at 10 + 2h at 4.80 + 1h at 10, and 0 GB of storage.
    assert_eq!(bill.instances[0].compute, Money::from_micros(29_600_000));
    assert_eq!(bill.instances[0].running_seconds, 4 * 3600);
    assert_eq!(bill.total, Money::from_micros(29_600_000));
}

#[test]
fn a_waiting_power_on_takes_the_next_free_gpu() {
    let fleet = FleetFile::parse(
        "wait",
        r#"
platform: { create_time: 0s, start_time: 5s, stop_time: 3s, power_on_without_gpu: wait }
regions: [{ id: r1, name: R1, cluster: c1, gpus: { nvidia.com/gpu-x: 1 } }]
skus:
  - { id: one, region: r1, name: X, gpu_product: X, gpu_resource_key: nvidia.com/gpu-x, gpu_count: 1, gpu_memory_gb: 24, cpu_cores: 8, memory_gb: 64, price: 1 }
instances:
  - { display_name: a, cluster: c1, sku: one, image: i, status: running }
  - { display_name: b, cluster: c1, sku: one, image: i, status: stopped }
"#,
    )
    .unwrap();
    let t0 = start_time();
    let mut sim = fleet.build("ns", t0).unwrap();
    let name = |sim: &Simulator, d: &str| sim.instances().find(|i| i.display_name == d).unwrap().name.clone();
    let (a, b) = (name(&sim, "a"), name(&sim, "b"));
    sim.power_on(t0, "c1", &b).unwrap();
    sim.advance(t0 + Duration::seconds(60));
    assert_eq!(sim.instance(&b).unwrap().phase, Phase::Starting, "no GPU free: waits");
    sim.power_off(t0 + Duration::seconds(60), "c1", &a, &wire::PowerOffBody::default()).unwrap();
    sim.advance(t0 + Duration::seconds(63 + 4));
    assert_eq!(sim.instance(&b).unwrap().phase, Phase::Starting);
    sim.advance(t0 + Duration::seconds(63 + 5));
    assert_eq!(sim.instance(&b).unwrap().phase, Phase::Running, "started 5s after a's GPU was freed");
}

#[test]
fn a_month_replays_in_well_under_a_second() {
    let fleet = FleetFile::parse("month", mdc_autoscaler::sim::fleet::DEFAULT_FLEET).unwrap();
    let mut sim = fleet.build("demo", start_time()).unwrap();
    let started = std::time::Instant::now();
    // A month of 30-second cycles: 86,400 advances and reads.
    let mut now = start_time();
    for _ in 0..(30 * 24 * 120) {
        now += Duration::seconds(30);
        sim.advance(now);
    }
    let bill = sim.bill();
    assert!(bill.total > Money::ZERO);
    // Not a timing assertion: printed for the record, `cargo test -- --nocapture`.
    println!("a month of 30 s cycles on the default fleet: {:?}", started.elapsed());
}
