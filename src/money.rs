//! Money as integer millionths of a yuan: no floating point once a value is
//! inside, and arithmetic that saturates: an absurd amount stays absurd (and
//! huge), never wraps into a negative price or a saving out of nothing.

use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub};

use serde::{Deserialize, Serialize};

/// An amount of CNY, kept as millionths of a yuan.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

const MICROS_PER_YUAN: i64 = 1_000_000;
const MILLIS_PER_HOUR: i128 = 3_600_000;

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    pub const fn from_yuan(yuan: i64) -> Self {
        Money(yuan * MICROS_PER_YUAN)
    }

    /// The fen (0.01 CNY) of the `neolink.ai/unit-price` annotation.
    pub const fn from_fen(fen: i64) -> Self {
        Money(fen * 10_000)
    }

    /// Prices arrive from the API as JSON numbers; this is the one place they
    /// become exact, rounded to the nearest millionth.
    pub fn from_yuan_f64(yuan: f64) -> Option<Self> {
        let micros = (yuan * MICROS_PER_YUAN as f64).round();
        (micros.is_finite() && micros.abs() < i64::MAX as f64).then_some(Money(micros as i64))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// For display, metrics and the wire only.
    pub fn as_yuan_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_YUAN as f64
    }

    /// What an hourly price costs over `millis` milliseconds, rounded down to
    /// the millionth. Long sums should add [`Money::hourly_scaled`] instead.
    pub fn hourly_for_millis(self, millis: i64) -> Money {
        Money::from_hourly_scaled(self.hourly_scaled(millis))
    }

    /// `self × millis` in millionth-milliseconds per hour: exact, to be summed
    /// and divided once by [`Money::from_hourly_scaled`].
    pub fn hourly_scaled(self, millis: i64) -> i128 {
        self.0 as i128 * millis as i128
    }

    pub fn from_hourly_scaled(scaled: i128) -> Money {
        let micros = scaled / MILLIS_PER_HOUR;
        Money(micros.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }
}

/// Money as yuan in JSON (`#[serde(serialize_with = "money::yuan")]`): every
/// output people and tools read says yuan; millionths stay inside.
pub fn yuan<S: serde::Serializer>(money: &Money, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(money.as_yuan_f64())
}

/// Money read back from yuan in JSON (what [`yuan`] wrote).
pub fn from_yuan<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
    let yuan = <f64 as serde::Deserialize>::deserialize(deserializer)?;
    Money::from_yuan_f64(yuan).ok_or_else(|| serde::de::Error::custom(format!("{yuan} is not an amount of yuan")))
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl Mul<i64> for Money {
    type Output = Money;
    fn mul(self, rhs: i64) -> Money {
        Money(self.0.saturating_mul(rhs))
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// Yuan with at least two decimals and at most six: `10.00`, `4.80`, `0.002778`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / MICROS_PER_YUAN as u64;
        let frac = format!("{:06}", abs % MICROS_PER_YUAN as u64);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.len() < 2 { &format!("{frac:0<2}") } else { frac };
        write!(f, "{sign}{whole}.{frac}")
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{self}")
    }
}

/// A discount multiplier (`ratio` on a SKU: 0.48 = pay 48%), in parts per million.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ratio(u32);

impl Ratio {
    pub const ONE: Ratio = Ratio(1_000_000);

    pub fn from_f64(ratio: f64) -> Option<Self> {
        let ppm = (ratio * 1e6).round();
        (ppm.is_finite() && (0.0..=u32::MAX as f64).contains(&ppm)).then_some(Ratio(ppm as u32))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// The price after this ratio, rounded to the nearest millionth of a yuan.
    pub fn apply(self, price: Money) -> Money {
        let scaled = price.micros() as i128 * self.0 as i128;
        Money::from_micros(((scaled + 500_000) / 1_000_000) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let most = Money::from_micros(i64::MAX);
        assert_eq!(most + Money::from_yuan(1), most);
        assert_eq!(Money::from_micros(i64::MIN) - Money::from_yuan(1), Money::from_micros(i64::MIN));
        assert_eq!(Money::from_yuan(9_000_000_000_000) * 1000, most);
        assert_eq!(most.hourly_for_millis(i64::MAX), most, "a long sum of a huge price stays positive");
        assert!([most, most].into_iter().sum::<Money>() > Money::ZERO);
    }

    #[test]
    fn displays_yuan_with_two_to_six_decimals() {
        assert_eq!(Money::from_yuan(10).to_string(), "10.00");
        assert_eq!(Money::from_micros(4_800_000).to_string(), "4.80");
        assert_eq!(Money::from_micros(2_778).to_string(), "0.002778");
        assert_eq!(Money::from_micros(-1_250_000).to_string(), "-1.25");
    }

    #[test]
    fn floats_from_the_wire_become_exact() {
        assert_eq!(Money::from_yuan_f64(2.5), Some(Money::from_micros(2_500_000)));
        assert_eq!(Money::from_yuan_f64(0.1 + 0.2), Some(Money::from_micros(300_000)));
        assert_eq!(Money::from_yuan_f64(f64::NAN), None);
        assert_eq!(Money::from_fen(250), Money::from_micros(2_500_000));
    }

    #[test]
    fn ratio_applies_exactly() {
        let ratio = Ratio::from_f64(0.48).unwrap();
        assert_eq!(ratio.apply(Money::from_yuan(10)), Money::from_micros(4_800_000));
        assert_eq!(Ratio::ONE.apply(Money::from_yuan(3)), Money::from_yuan(3));
        assert_eq!(Ratio::from_f64(-0.1), None);
    }

    #[test]
    fn per_second_billing_sums_without_drift() {
        let price = Money::from_yuan(10);
        // 3,600 one-second slices cost exactly one hour.
        let scaled: i128 = (0..3600).map(|_| price.hourly_scaled(1000)).sum();
        assert_eq!(Money::from_hourly_scaled(scaled), price);
        assert_eq!(price.hourly_for_millis(1000), Money::from_micros(2_777));
    }
}
