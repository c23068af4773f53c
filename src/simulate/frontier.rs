//! The fixed-timer frontier: of (spend, cold starts) over every fixed idle
//! timer replayed (always on among them), the lower convex hull. A mix of
//! timers (some instances on one, some on another, or one timer part of the
//! time) reaches any point on a segment between two of them, so a policy is
//! only better than fixed timers if it lies below that hull, not merely
//! below each timer.

use serde::Serialize;

/// One replayed strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub name: String,
    /// The timer's length; `None` for always on.
    pub stop_after_minutes: Option<i64>,
    pub spend_yuan: f64,
    pub cold_starts: u32,
    /// On the lower convex hull.
    pub on_frontier: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No mix of fixed timers has both lower spend and no more cold starts.
    Below,
    /// As good as the best mix at its cold starts, no better.
    On,
    /// A mix of fixed timers spends less with no more cold starts.
    Above,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Below => "below the fixed-timer frontier",
            Verdict::On => "on the fixed-timer frontier",
            Verdict::Above => "above the fixed-timer frontier",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Frontier {
    /// Every timer replayed, fewest cold starts first.
    pub points: Vec<Point>,
    pub verdict: Verdict,
    /// The least a mix of fixed timers spends with no more cold starts than
    /// the policy; `None` when every timer has more.
    pub frontier_spend_yuan: Option<f64>,
    /// `frontier_spend_yuan` minus the policy's spend: what the policy saves
    /// against the best mix of timers (negative: what it costs more).
    pub saving_yuan: Option<f64>,
}

/// Spends within this of each other are equal (money is reported to the fen).
const SAME: f64 = 0.005;

/// Places a policy's (spend, cold starts) against the timers' points.
pub fn place(mut points: Vec<Point>, spend_yuan: f64, cold_starts: u32) -> Frontier {
    points.sort_by(|a, b| a.cold_starts.cmp(&b.cold_starts).then(a.spend_yuan.total_cmp(&b.spend_yuan)));
    let hull = hull(&points);
    for (i, p) in points.iter_mut().enumerate() {
        p.on_frontier = hull.contains(&i);
    }
    let corners: Vec<(f64, f64)> = hull.iter().map(|&i| (points[i].cold_starts as f64, points[i].spend_yuan)).collect();
    let frontier = spend_at(&corners, cold_starts as f64);
    let verdict = match frontier {
        None => Verdict::Below,
        Some(f) if spend_yuan < f - SAME => Verdict::Below,
        Some(f) if spend_yuan <= f + SAME => Verdict::On,
        Some(_) => Verdict::Above,
    };
    let round = |y: f64| (y * 100.0).round() / 100.0;
    Frontier {
        points,
        verdict,
        frontier_spend_yuan: frontier.map(round),
        saving_yuan: frontier.map(|f| round(f - spend_yuan)),
    }
}

/// Indexes of the points on the lower convex hull that matter: from the
/// fewest cold starts to the least spend, each corner cheaper than the last
/// (a point with more cold starts and no less spend helps nobody).
fn hull(points: &[Point]) -> Vec<usize> {
    let xy = |i: usize| (points[i].cold_starts as f64, points[i].spend_yuan);
    let mut hull: Vec<usize> = Vec::new();
    for i in 0..points.len() {
        let (x, y) = xy(i);
        // Of points with the same cold starts, only the cheapest (sorted first) counts.
        if hull.last().is_some_and(|&j| xy(j).0 == x) {
            continue;
        }
        // Nothing with more cold starts and no less spend.
        if hull.last().is_some_and(|&j| xy(j).1 <= y) {
            continue;
        }
        while hull.len() >= 2 {
            let (a, b) = (xy(hull[hull.len() - 2]), xy(hull[hull.len() - 1]));
            // b is on or above the segment a → (x, y): not a corner.
            if (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0) <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(i);
    }
    hull
}

/// The hull's spend at `x` cold starts: between corners, on the segment;
/// past the last, the last's (more cold starts buy nothing more).
fn spend_at(corners: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = corners.first()?;
    if x < first.0 {
        return None;
    }
    for pair in corners.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0));
        }
    }
    corners.last().map(|c| c.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minutes: Option<i64>, spend_yuan: f64, cold_starts: u32) -> Point {
        let name = minutes.map_or("always_on".into(), |m| format!("idle_{m}m"));
        Point { name, stop_after_minutes: minutes, spend_yuan, cold_starts, on_frontier: false }
    }

    /// Always on ¥100 with no cold start; 60 min ¥60 with 10; 30 min ¥50
    /// with 20 (a corner: the segment 60 → 5 passes above it); 15 min ¥48
    /// with 30 (above the segment 30 → 5, which is at ¥47.50 there); 5 min
    /// ¥40 with 60; 0 min ¥41 with 80 (more starts, more money).
    fn timers() -> Vec<Point> {
        vec![
            point(Some(0), 41.0, 80),
            point(Some(5), 40.0, 60),
            point(Some(15), 48.0, 30),
            point(Some(30), 50.0, 20),
            point(Some(60), 60.0, 10),
            point(None, 100.0, 0),
        ]
    }

    #[test]
    fn the_hull_keeps_the_corners_only() {
        let frontier = place(timers(), 0.0, 0);
        let on: Vec<&str> = frontier.points.iter().filter(|p| p.on_frontier).map(|p| p.name.as_str()).collect();
        assert_eq!(on, ["always_on", "idle_60m", "idle_30m", "idle_5m"]);
    }

    #[test]
    fn a_policy_is_placed_against_the_mix_at_its_cold_starts() {
        // At 15 cold starts the mix of 60 and 30 min spends 55.
        let on = place(timers(), 55.0, 15);
        assert_eq!((on.verdict, on.frontier_spend_yuan, on.saving_yuan), (Verdict::On, Some(55.0), Some(0.0)));
        let below = place(timers(), 52.0, 15);
        assert_eq!((below.verdict, below.saving_yuan), (Verdict::Below, Some(3.0)));
        // As good as the 15-minute timer, yet a mix of 30 and 5 minutes does better.
        let above = place(timers(), 48.0, 30);
        assert_eq!(
            (above.verdict, above.frontier_spend_yuan, above.saving_yuan),
            (Verdict::Above, Some(47.5), Some(-0.5))
        );
        // Past the last corner more cold starts buy nothing: ¥40 stands.
        assert_eq!(place(timers(), 40.5, 200).verdict, Verdict::Above);
    }

    #[test]
    fn fewer_cold_starts_than_any_timer_is_below() {
        let mut points = timers();
        points.retain(|p| p.stop_after_minutes.is_some());
        let frontier = place(points, 70.0, 5);
        assert_eq!((frontier.verdict, frontier.frontier_spend_yuan), (Verdict::Below, None));
    }
}
