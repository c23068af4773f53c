//! Managed pools, named by slot. Without idle rules a pool keeps `desired`
//! members running: it starts stopped members before creating. With idle
//! rules each member runs and stops by them like any instance (learned
//! timers, pre-warming), and the count is how many members the pool keeps
//! and at most how many run. Creates go to the cheapest SKU that fits (or
//! wait for a discount that opens soon); the surplus goes idle members
//! first, then the most expensive, then the longest idle.

use chrono::{DateTime, Utc};

use super::candidate::{Candidate, Reason, Target};
use super::memo::Known;
use super::observed::{ObservedInstance, Reading, yuan};
use super::{ActionKind, Cause, InstanceRef, Planner};
use crate::cloud::{CreateRequest, InstanceStatus, Sku};
use crate::config::policy::{HardStop, Policy, Pool, ScaleDown};
use crate::money::Money;
use crate::pricing::{self, Wanted};

impl<'a> Planner<'a> {
    pub(super) fn pool(&mut self, policy: &'a Policy, pool: &Pool, members: &[&'a ObservedInstance]) {
        let now = self.now;
        let calendar = self.kept.as_mut().map(|k| &mut k.calendars[self.policy_index].desired);
        let (desired, change) = match calendar {
            Some(known) => {
                let value =
                    Known::at(known, now).unwrap_or_else(|| (pool.desired_at(now), pool.next_desired_change(now)));
                *known = Some(Known { value, from: now, until: value.1 });
                value
            }
            None => (pool.desired_at(now), pool.next_desired_change(now)),
        };
        if let Some(change) = change {
            self.wake(change);
        }
        let wanted = pool.wanted();
        let mut desired = desired;
        if pool.only_during_discount && desired > 0 {
            let fitting = || self.observed.skus.iter().filter(|s| wanted.fits(s));
            if !fitting().any(|s| pricing::discount_active(s, self.now)) {
                let opens = fitting().filter_map(pricing::window).map(|w| w.start).filter(|t| *t > self.now).min();
                if let Some(opens) = opens {
                    self.wake(opens);
                }
                self.note(policy, None, || format!("pool wants {desired} but runs only during a discount (none now)"));
                desired = 0;
            }
        }
        for member in members {
            if let InstanceStatus::Unknown(raw) = &member.instance.status {
                self.note(policy, Some(&member.instance), || {
                    format!("not touched: unknown status {raw:?} (it holds its slot)")
                });
            }
        }
        // Anything not plainly stopped or going away holds its slot, unknown states included:
        // never create beside an instance we cannot read.
        let live: Vec<&ObservedInstance> = members
            .iter()
            .copied()
            .filter(|m| {
                !matches!(
                    m.instance.status,
                    InstanceStatus::Stopped | InstanceStatus::Stopping | InstanceStatus::Deleting
                )
            })
            .collect();
        let pending = self.pending_creates(policy, pool);
        let live_count = live.len() as u32 + pending;
        if policy.idle.is_some() {
            return self.pool_by_rules(policy, pool, &wanted, members, &live, pending, desired);
        }
        if live_count < desired {
            let need = desired - live_count;
            let need = self.start_members(policy, pool, members, need, live_count, desired);
            let have = match pending {
                0 => format!("pool has {live_count} of {desired} running"),
                _ => format!("pool has {} of {desired} running and {pending} not listed yet", live_count - pending),
            };
            self.create_members(policy, pool, &wanted, members, need, &have);
        } else if live_count > desired {
            self.scale_down(policy, pool, &live, live_count - desired, live_count, desired);
        }
        if pool.scale_down == ScaleDown::Delete && live_count >= desired {
            for member in members.iter().filter(|m| m.instance.status == InstanceStatus::Stopped) {
                let reason =
                    format!("pool has {live_count} of {desired} running; surplus stopped member (scale_down: delete)");
                self.propose(policy, &member.instance, ActionKind::Delete, Cause::ScaleDown, Reason::Text(reason));
            }
        }
    }

    /// Creates sent for this pool's slots that are not listed yet (each
    /// holds its slot, as a member starting would), noted; how many.
    fn pending_creates(&mut self, policy: &'a Policy, pool: &Pool) -> u32 {
        let (now, delay) = (self.now, self.config.settings.listing_delay);
        let mut count = 0;
        for p in &self.observed.pending_creates {
            let ours = pool.slot_of(&p.display_name).is_some() && pool.clusters.contains(&p.cluster);
            if !ours || !p.holds(now, delay) {
                continue;
            }
            let until = p.sent_at + delay;
            self.wake(until);
            let (sent, until) = (self.local(policy, p.sent_at), self.local(policy, until));
            self.note(policy, None, || {
                format!(
                    "{} was created at {sent} and is not listed yet: it holds its slot until {until}",
                    p.display_name
                )
            });
            count += 1;
        }
        count
    }

    /// A pool with idle rules: members run by the rules, up to `desired` of
    /// them; the pool keeps `desired` members, and removes the surplus.
    #[allow(clippy::too_many_arguments)]
    fn pool_by_rules(
        &mut self,
        policy: &'a Policy,
        pool: &Pool,
        wanted: &Wanted<'_>,
        members: &[&'a ObservedInstance],
        live: &[&'a ObservedInstance],
        pending: u32,
        desired: u32,
    ) {
        let live_count = live.len() as u32 + pending;
        let removed = if live_count > desired {
            self.scale_down(policy, pool, live, live_count - desired, live_count, desired)
        } else {
            Vec::new()
        };
        for member in live.iter().filter(|m| !removed.contains(&m.instance.name.as_str())) {
            self.instance(policy, member);
        }
        let mut stopped: Vec<&ObservedInstance> =
            members.iter().copied().filter(|m| m.instance.status == InstanceStatus::Stopped).collect();
        stopped.sort_by_key(|m| pool.slot_of(&m.instance.display_name));
        // Kept members beyond the count, the highest slots first, go when it falls (scale_down: delete).
        let kept = members.iter().filter(|m| m.instance.status != InstanceStatus::Deleting).count() as u32 + pending;
        let mut surplus = match pool.scale_down {
            ScaleDown::Delete => kept.saturating_sub(desired),
            ScaleDown::Stop => 0,
        };
        while surplus > 0
            && let Some(member) = stopped.pop()
        {
            let reason =
                format!("pool keeps {kept} members, {desired} wanted; surplus stopped member (scale_down: delete)");
            self.propose(policy, &member.instance, ActionKind::Delete, Cause::ScaleDown, Reason::Text(reason));
            surplus -= 1;
        }
        let mut room = desired.saturating_sub(live_count);
        for member in stopped {
            if room == 0 {
                let text = format!("not started: the pool runs at most {desired} now");
                self.note(policy, Some(&member.instance), || text);
                continue;
            }
            let before = self.draft.candidates.len();
            self.instance(policy, member);
            if self.draft.candidates[before..].iter().any(|c| matches!(c.kind, ActionKind::PowerOn)) {
                room -= 1;
            }
        }
        if kept < desired {
            let have = format!("pool keeps {kept} of {desired} members");
            self.create_members(policy, pool, wanted, members, desired - kept, &have);
        }
    }

    /// Starts stopped members, the lowest slots first; answers how many more are needed.
    fn start_members(
        &mut self,
        policy: &'a Policy,
        pool: &Pool,
        members: &[&'a ObservedInstance],
        mut need: u32,
        live: u32,
        desired: u32,
    ) -> u32 {
        let mut stopped: Vec<&ObservedInstance> =
            members.iter().copied().filter(|m| m.instance.status == InstanceStatus::Stopped).collect();
        stopped.sort_by_key(|m| pool.slot_of(&m.instance.display_name));
        for member in stopped {
            if need == 0 {
                break;
            }
            let instance = &member.instance;
            let cost = self.hourly_cost(instance);
            if let Err(why) = self.room_for(policy, cost, false) {
                self.note(policy, Some(instance), || format!("not started: {why}"));
                return 0;
            }
            let sku = self.observed.sku(&instance.cost.sku_id);
            if sku.is_some_and(|s| self.free_gpus(s) < s.hardware.gpu_count) {
                self.note(policy, Some(instance), || {
                    format!("not started: no free GPUs on SKU {}", instance.cost.sku_id)
                });
                continue;
            }
            let reason = format!("pool has {live} of {desired} running; start a stopped member (keeps its data)");
            self.propose(policy, instance, ActionKind::PowerOn, Cause::ScaleUp, Reason::Text(reason));
            self.commit(cost);
            if let Some(sku) = sku {
                self.reserve(sku);
            }
            need -= 1;
        }
        need
    }

    /// Creates `need` members in the free slots, on the cheapest SKU that fits.
    fn create_members(
        &mut self,
        policy: &'a Policy,
        pool: &Pool,
        wanted: &Wanted<'_>,
        members: &[&'a ObservedInstance],
        mut need: u32,
        have: &str,
    ) {
        if need == 0 {
            return;
        }
        // A SKU cooling off after a capacity failure may be the cheapest again soon.
        let backoff = self.config.settings.capacity_backoff;
        if let Some(retry) =
            self.observed.capacity_failures.values().map(|at| *at + backoff).filter(|t| *t > self.now).min()
        {
            self.wake(retry);
        }
        let delay = self.config.settings.listing_delay;
        let pending =
            self.observed.pending_creates.iter().filter(|p| p.holds(self.now, delay)).map(|p| &p.display_name);
        let mut taken: Vec<u32> =
            members.iter().map(|m| &m.instance.display_name).chain(pending).filter_map(|d| pool.slot_of(d)).collect();
        while need > 0 {
            // The SKUs with what this plan has already taken set aside.
            let skus: std::borrow::Cow<[Sku]> = if self.reserved.is_empty() {
                std::borrow::Cow::Borrowed(&self.observed.skus)
            } else {
                self.observed.skus.iter().map(|s| Sku { free_gpus: self.free_gpus(s), ..s.clone() }).collect()
            };
            let slot = (0..).find(|s| !taken.contains(s)).expect("a free slot");
            let now = self.now;
            let failures = &self.observed.capacity_failures;
            let cooling = |s: &Sku| failures.get(&s.id).is_some_and(|at| now - *at < backoff);
            let (sku, price) = match pricing::choose_sku(&skus, wanted, now, cooling) {
                Ok((sku, price)) => (sku.clone(), price),
                Err(why) => {
                    self.note(policy, None, || format!("not created: {why}"));
                    return;
                }
            };
            if let Some(wait) = pool.wait_for_discount
                && let Some((later, opens, then)) = pricing::upcoming_discount(&skus, wanted, now, wait, price)
            {
                self.wake(opens);
                let at = self.local(policy, opens);
                let text = || {
                    format!(
                        "not created: waiting for the discount on SKU {} ({}) at {at}: {}/h instead of {}/h",
                        later.id,
                        later.name,
                        yuan(then),
                        yuan(price)
                    )
                };
                self.note(policy, None, text);
                return;
            }
            if let Err(why) = self.room_for(policy, price, true) {
                self.note(policy, None, || format!("not created: {why}"));
                return;
            }
            let display_name = pool.slot_name(slot);
            if let Some(glob) = policy.protect.iter().find(|g| g.matches(&display_name)) {
                self.note(policy, None, || format!("not created: {display_name} is protected by `{}`", glob.as_str()));
                return;
            }
            let discount = if pricing::discount_active(&sku, now) { " (discounted)" } else { "" };
            let reason = format!(
                "{have}; cheapest fitting SKU is {} ({}) in {} at {}/h{discount}",
                sku.id,
                sku.name,
                sku.cluster,
                yuan(price)
            );
            self.push_create(policy, pool, &sku, slot, display_name, price, reason);
            self.reserve(&sku);
            self.commit(price);
            taken.push(slot);
            need -= 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_create(
        &mut self,
        policy: &'a Policy,
        pool: &Pool,
        sku: &Sku,
        slot: u32,
        display_name: String,
        price: Money,
        reason: String,
    ) {
        let request = CreateRequest {
            cluster: sku.cluster.clone(),
            display_name: display_name.clone(),
            image: pool.image.clone(),
            sku_id: sku.id.clone(),
            billing_type: pool.billing.clone(),
            term: pool.term.clone(),
            coupon_id: String::new(),
            disk_sku_id: pool.disk_sku_id.clone(),
            volumes: pool.volume.iter().cloned().collect(),
            region: String::new(),
        };
        self.draft.candidates.push(Candidate {
            policy,
            target: Target::Slot(InstanceRef { name: String::new(), display_name, cluster: sku.cluster.clone() }),
            kind: ActionKind::Create { request: Box::new(request), slot, sku_name: sku.name.clone() },
            cause: Cause::ScaleUp,
            reason: Reason::Text(reason),
            saving_per_hour: Money::ZERO - price,
            schedule_edge: None,
            unannounced: false,
        });
    }

    fn scale_down(
        &mut self,
        policy: &'a Policy,
        pool: &Pool,
        live: &[&'a ObservedInstance],
        surplus: u32,
        count: u32,
        desired: u32,
    ) -> Vec<&'a str> {
        let idle = policy.idle.as_ref();
        let mut running: Vec<(&ObservedInstance, bool, Money, DateTime<Utc>)> = live
            .iter()
            .filter(|m| m.instance.status == InstanceStatus::Running)
            .map(|m| {
                let in_use = idle.is_some_and(|i| super::instance::idle_since(i, m).is_none());
                (*m, in_use, self.hourly_cost(&m.instance), idle_since(m, self.now))
            })
            .collect();
        // Idle members first (busy ones drain: their stops wait for idle); then the
        // most expensive, the longest idle, the highest slot.
        running.sort_by(|a, b| {
            (a.1, b.2, a.3, std::cmp::Reverse(pool.slot_of(&a.0.instance.display_name))).cmp(&(
                b.1,
                a.2,
                b.3,
                std::cmp::Reverse(pool.slot_of(&b.0.instance.display_name)),
            ))
        });
        let mut removed = Vec::new();
        for (member, _, cost, _) in running.into_iter().take(surplus as usize) {
            let reason =
                format!("pool has {count} running, {desired} wanted; remove the most expensive ({}/h)", yuan(cost));
            self.due_stop(policy, member, HardStop::ScaleDown, Cause::ScaleDown, Reason::Text(reason), None);
            removed.push(member.instance.name.as_str());
        }
        removed
    }
}

impl Planner<'_> {
    /// Free GPUs of a SKU, less what this plan has taken from its model's pool.
    pub(super) fn free_gpus(&self, sku: &Sku) -> u32 {
        let key = (sku.region_id.clone(), sku.hardware.gpu_resource_key.clone());
        sku.free_gpus.saturating_sub(self.reserved.get(&key).copied().unwrap_or(0))
    }

    pub(super) fn reserve(&mut self, sku: &Sku) {
        *self.reserved.entry((sku.region_id.clone(), sku.hardware.gpu_resource_key.clone())).or_default() +=
            sku.hardware.gpu_count;
    }
}

/// When the instance stopped being used, by any signal's reading; now if in use.
fn idle_since(member: &ObservedInstance, now: DateTime<Utc>) -> DateTime<Utc> {
    member
        .signals
        .values()
        .map(|r| match r {
            Reading::IdleSince(t) => *t,
            Reading::Active | Reading::Unreadable(_) => now,
        })
        .max()
        .unwrap_or(now)
}
