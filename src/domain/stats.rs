//! Statistics of evaluation results, after Evan Miller, "Adding Error Bars to Evals" (2024):
//! standard errors from the central limit theorem, clustered standard errors, inference on
//! paired per-row differences, and power. Pure functions over numbers; no I/O.
//!
//! The distributions are computed here rather than taken from a crate: the normal and Student t
//! quantiles, the t distribution through the regularized incomplete beta function, and the
//! binomial tail McNemar's exact test needs (also an incomplete beta). Each is checked against
//! scipy's values in the tests below and in `tests/stats/reference.json`.

use std::collections::HashMap;

/// The power the minimum detectable effect and the row counts of a plan are computed for.
pub const POWER: f64 = 0.80;

/// The confidence level used when neither `--confidence` nor runner.toml gives one.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized upper incomplete gamma function Q(a, x) (series below a + 1, a continued
/// fraction above, as in Numerical Recipes).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        1.0 - sum * front
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        front * h
    }
}

/// The complementary error function.
pub fn erfc(x: f64) -> f64 {
    if x >= 0.0 {
        gamma_q(0.5, x * x)
    } else {
        2.0 - gamma_q(0.5, x * x)
    }
}

/// The standard normal distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal quantile Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation, then
/// one Halley step on the exact distribution function: full double precision).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..200_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: the two-sided p-value.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// The distribution function of Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = t_two_sided_p(t, df) / 2.0;
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The quantile of Student's t with `df` degrees of freedom (bisection on `t_cdf`).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    if p == 0.5 {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0_f64, normal_quantile(p).max(1.0));
    while t_cdf(hi, df) < p {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    (lo + hi) / 2.0
}

/// P(X ≤ k) for X binomial with `n` trials of probability `p`.
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    incomplete_beta((n - k) as f64, k as f64 + 1.0, 1.0 - p)
}

/// McNemar's exact test on the discordant pairs of a paired pass / fail comparison: `b` rows
/// that pass only on one side, `c` only on the other. The two-sided p-value (twice the binomial
/// tail at ½, at most 1), as statsmodels' `mcnemar(exact=True)` computes it.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    (2.0 * binomial_cdf(b.min(c), n, 0.5)).min(1.0)
}

/// The two-sided critical value of the normal distribution for a confidence level (1.96 at
/// 0.95).
pub fn z_critical(confidence: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - confidence) / 2.0)
}

/// The confidence level as people read it: 95%, 99.9%.
pub fn confidence_text(confidence: f64) -> String {
    let pct = format!("{:.1}", confidence * 100.0);
    format!("{}%", pct.strip_suffix(".0").unwrap_or(&pct))
}

/// An interval of rates as people read it: `77.8–89.2%`.
pub fn rate_interval(ci: [f64; 2]) -> String {
    format!("{:.1}–{:.1}%", ci[0] * 100.0, ci[1] * 100.0)
}

/// The two-sided critical value of Student's t for a confidence level.
pub fn t_critical(confidence: f64, df: f64) -> f64 {
    t_quantile(1.0 - (1.0 - confidence) / 2.0, df)
}

/// The minimum detectable effect: the smallest true difference a two-sided test at
/// `confidence` finds with probability `power`, given the standard error of the estimate
/// ((z₁₋α/₂ + z_power) × SE, Miller's equation for power).
pub fn minimum_detectable_effect(se: f64, confidence: f64, power: f64) -> f64 {
    (z_critical(confidence) + normal_quantile(power)) * se
}

/// Rows needed for a minimum detectable effect of `detect`, when `rows` rows gave `mde`
/// (the standard error shrinks as 1/√rows). None when `detect` is not positive.
pub fn rows_needed(rows: usize, mde: f64, detect: f64) -> Option<u64> {
    if detect <= 0.0 || !mde.is_finite() {
        return None;
    }
    let needed = rows as f64 * (mde / detect).powi(2);
    Some((needed - 1e-9).ceil().max(2.0) as u64)
}

/// Rows needed to detect `detect` with `power` at `confidence` when one row's contribution has
/// variance `variance` (a row's paired difference, or a single observation).
pub fn rows_for_variance(variance: f64, detect: f64, confidence: f64, power: f64) -> Option<u64> {
    if detect <= 0.0 || !variance.is_finite() {
        return None;
    }
    let z = z_critical(confidence) + normal_quantile(power);
    let needed = (z * variance.sqrt() / detect).powi(2);
    Some((needed - 1e-9).ceil().max(2.0) as u64)
}

/// One line of a plan: with `repetitions` answers a row and `variance` as the variance of one
/// row's paired difference, the rows needed to detect `detect`, and what the dataset's rows
/// detect.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PlanLine {
    pub repetitions: u32,
    pub variance: f64,
    pub rows_needed: Option<u64>,
    /// The minimum detectable effect with every row of the dataset.
    pub detectable_with_dataset: f64,
}

pub fn plan_line(
    variance: f64,
    repetitions: u32,
    dataset_rows: usize,
    detect: f64,
    confidence: f64,
) -> PlanLine {
    let se = (variance / dataset_rows.max(1) as f64).sqrt();
    PlanLine {
        repetitions,
        variance,
        rows_needed: rows_for_variance(variance, detect, confidence, POWER),
        detectable_with_dataset: minimum_detectable_effect(se, confidence, POWER),
    }
}

/// The variance of one row's paired difference with `k` answers a row, when two versions
/// behave like one measured version (between-row variance `between`, within-row variance
/// `within`) and their rows are uncorrelated: 2 (σ²_between + σ²_within / k).
pub fn paired_variance_from_one(between: f64, within: f64, k: u32) -> f64 {
    2.0 * (between + within / f64::from(k.max(1)))
}

/// A running mean and variance (Welford's algorithm: stable over a million rows).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The sample variance (n − 1 in the denominator); None below two values.
    pub fn variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).max(0.0))
    }

    /// Moments from a count, a sum and a sum of squares (what a database aggregates).
    pub fn from_sums(n: u64, sum: f64, sum_sq: f64) -> Moments {
        if n == 0 {
            return Moments::default();
        }
        let mean = sum / n as f64;
        Moments {
            n,
            mean,
            m2: (sum_sq - sum * mean).max(0.0),
        }
    }
}

/// A standard error with the degrees of freedom its t intervals and tests use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StandardError {
    pub se: f64,
    pub df: f64,
    /// Clusters the error was computed over (None: rows taken as independent).
    pub clusters: Option<usize>,
}

/// Per-row values of one quantity (a pass, a score, a paired difference), with the cluster
/// each row belongs to when rows are clustered. Memory: one entry per cluster, none per row.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    moments: Moments,
    /// Cluster → (rows, sum).
    clusters: Option<HashMap<String, (u64, f64)>>,
}

impl Sample {
    pub fn new(clustered: bool) -> Sample {
        Sample {
            moments: Moments::default(),
            clusters: clustered.then(HashMap::new),
        }
    }

    pub fn push(&mut self, x: f64, cluster: Option<&str>) {
        self.moments.push(x);
        if let Some(clusters) = &mut self.clusters {
            let key = cluster.unwrap_or_default();
            // Most rows join a cluster already seen: no key is allocated for them.
            match clusters.get_mut(key) {
                Some(slot) => {
                    slot.0 += 1;
                    slot.1 += x;
                }
                None => {
                    clusters.insert(key.to_string(), (1, x));
                }
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.moments.count()
    }

    pub fn mean(&self) -> f64 {
        self.moments.mean()
    }

    pub fn moments(&self) -> Moments {
        self.moments
    }

    /// The standard error of the mean: s/√n, or with clusters the cluster-robust error
    /// √(G/(G−1) · Σ_c (Σ_{i∈c} (xᵢ − x̄))²) / n with G − 1 degrees of freedom (statsmodels'
    /// default small-sample correction). None with fewer than two rows (or clusters).
    pub fn standard_error(&self) -> Option<StandardError> {
        let n = self.moments.count();
        match &self.clusters {
            None => {
                let variance = self.moments.variance()?;
                Some(StandardError {
                    se: (variance / n as f64).sqrt(),
                    df: (n - 1) as f64,
                    clusters: None,
                })
            }
            Some(clusters) => {
                let g = clusters.len();
                if g < 2 {
                    return None;
                }
                let mean = self.moments.mean();
                let sum: f64 = clusters
                    .values()
                    .map(|(rows, total)| (total - *rows as f64 * mean).powi(2))
                    .sum();
                let g_f = g as f64;
                let variance = g_f / (g_f - 1.0) * sum / (n as f64).powi(2);
                Some(StandardError {
                    se: variance.sqrt(),
                    df: g_f - 1.0,
                    clusters: Some(g),
                })
            }
        }
    }
}

/// A mean with its standard error and its confidence interval (normal, by the central limit
/// theorem: mean ± z × SE).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub estimate: f64,
    /// 0 when every row agrees: serialized as null, with `se_note` saying why.
    #[serde(serialize_with = "se_or_null")]
    pub se: f64,
    pub ci: [f64; 2],
    /// Why `se` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_note: Option<&'static str>,
}

/// Said of a standard error of 0: every row agrees, so the rows give no spread to measure.
/// The interval the method gives still has a width; a standard error of 0 beside it would read
/// as certainty.
pub const NO_VARIATION: &str = "no variation: every row agrees";

/// A standard error as JSON: null when it is 0 (see `NO_VARIATION`), never a 0 that reads as
/// certainty.
pub fn se_or_null<S: serde::Serializer>(se: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if *se > 0.0 {
        serializer.serialize_f64(*se)
    } else {
        serializer.serialize_none()
    }
}

/// The note for a standard error: `NO_VARIATION` when it is 0.
pub fn se_note(se: f64) -> Option<&'static str> {
    (se <= 0.0).then_some(NO_VARIATION)
}

impl Estimate {
    pub fn normal(estimate: f64, se: f64, confidence: f64) -> Estimate {
        let half = z_critical(confidence) * se;
        Estimate {
            estimate,
            se,
            ci: [estimate - half, estimate + half],
            se_note: se_note(se),
        }
    }

    /// A pass rate: `passed` of `rows` independent pass / fail rows. The standard error stays
    /// s/√n; the interval is Wilson's score interval, which stays inside [0, 1] and keeps a
    /// width where the normal one collapses (every row passing gives SE 0 and a normal
    /// interval of one point; 20 of 20 rows passing is not proof of a 100 % rate).
    pub fn proportion(passed: f64, rows: f64, se: f64, confidence: f64) -> Estimate {
        Estimate {
            estimate: passed / rows,
            se,
            ci: wilson_interval(passed, rows, confidence),
            se_note: se_note(se),
        }
    }

    /// A mean that cannot leave [0, 1] (a pass rate averaged over repetitions or clustered):
    /// the normal interval cut to that range.
    pub fn normal_rate(estimate: f64, se: f64, confidence: f64) -> Estimate {
        let e = Estimate::normal(estimate, se, confidence);
        Estimate {
            ci: [e.ci[0].max(0.0), e.ci[1].min(1.0)],
            ..e
        }
    }
}

/// Wilson's score interval for a proportion of `passed` in `rows` (statsmodels'
/// `proportion_confint(method="wilson")`).
pub fn wilson_interval(passed: f64, rows: f64, confidence: f64) -> [f64; 2] {
    if rows <= 0.0 {
        return [0.0, 1.0];
    }
    let z = z_critical(confidence);
    let p = passed / rows;
    let z2 = z * z;
    let denominator = 1.0 + z2 / rows;
    let center = (p + z2 / (2.0 * rows)) / denominator;
    let half = z * (p * (1.0 - p) / rows + z2 / (4.0 * rows * rows)).sqrt() / denominator;
    [(center - half).max(0.0), (center + half).min(1.0)]
}

/// Cohen's kappa of two raters on the same items: agreement beyond what their own rates would
/// give by chance, with its asymptotic standard error and normal interval (cut to [−1, 1]), as
/// statsmodels' `cohens_kappa` computes them (`table[i][j]`: items the first rater put in category i and the
/// second in category j).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Kappa {
    pub kappa: f64,
    #[serde(serialize_with = "se_or_null")]
    pub se: f64,
    pub ci: [f64; 2],
    /// The share of items both put in the same category.
    pub agreement: f64,
    /// The agreement their marginal rates give by chance.
    pub chance_agreement: f64,
}

pub fn cohens_kappa<const K: usize>(table: &[[u64; K]; K], confidence: f64) -> Option<Kappa> {
    let nobs: f64 = table.iter().flatten().map(|&x| x as f64).sum();
    if nobs == 0.0 {
        return None;
    }
    let p = |i: usize, j: usize| table[i][j] as f64 / nobs;
    let row: Vec<f64> = (0..K).map(|i| (0..K).map(|j| p(i, j)).sum()).collect();
    let col: Vec<f64> = (0..K).map(|j| (0..K).map(|i| p(i, j)).sum()).collect();
    let agree: f64 = (0..K).map(|i| p(i, i)).sum();
    let chance: f64 = (0..K).map(|i| row[i] * col[i]).sum();
    if (1.0 - chance).abs() < f64::EPSILON {
        // Both raters put everything in one category: kappa is undefined.
        return None;
    }
    let kappa = (agree - chance) / (1.0 - chance);
    // Fleiss, Cohen and Everitt (1969), in statsmodels' arrangement.
    let term_a: f64 = (0..K)
        .map(|i| p(i, i) * (1.0 - (row[i] + col[i]) * (1.0 - kappa)).powi(2))
        .sum();
    let term_b: f64 = (0..K)
        .flat_map(|i| (0..K).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| p(i, j) * (col[i] + row[j]).powi(2))
        .sum::<f64>()
        * (1.0 - kappa).powi(2);
    let term_c = (kappa - chance * (1.0 - kappa)).powi(2);
    let variance = (term_a + term_b - term_c) / (1.0 - chance).powi(2) / nobs;
    let se = variance.max(0.0).sqrt();
    let z = z_critical(confidence);
    Some(Kappa {
        kappa,
        se,
        // Kappa lies in [−1, 1]; the normal interval is cut there.
        ci: [(kappa - z * se).max(-1.0), (kappa + z * se).min(1.0)],
        agreement: agree,
        chance_agreement: chance,
    })
}

/// Two independent samples compared (production traffic of two versions, where no row pairs
/// them): the difference candidate − baseline, its interval and the test's p-value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unpaired {
    /// `two-proportion z-test` or `Welch's t-test`.
    pub test: &'static str,
    pub baseline: f64,
    pub candidate: f64,
    pub difference: f64,
    pub ci: [f64; 2],
    pub p_value: f64,
}

/// Two proportions, `x_c` of `n_c` against `x_b` of `n_b`: the p-value of the pooled
/// two-proportion z-test (statsmodels' `proportions_ztest`), and Newcombe's hybrid score
/// interval for the difference (built from the two Wilson intervals, so it stays in [−1, 1]
/// and keeps a width at 0 % or 100 %).
pub fn two_proportion(x_b: f64, n_b: f64, x_c: f64, n_c: f64, confidence: f64) -> Option<Unpaired> {
    if n_b <= 0.0 || n_c <= 0.0 {
        return None;
    }
    let (p_b, p_c) = (x_b / n_b, x_c / n_c);
    let pooled = (x_b + x_c) / (n_b + n_c);
    let se = (pooled * (1.0 - pooled) * (1.0 / n_b + 1.0 / n_c)).sqrt();
    let p_value = if se > 0.0 {
        (2.0 * (1.0 - normal_cdf(((p_c - p_b) / se).abs()))).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let [l_c, u_c] = wilson_interval(x_c, n_c, confidence);
    let [l_b, u_b] = wilson_interval(x_b, n_b, confidence);
    let d = p_c - p_b;
    let ci = [
        d - ((p_c - l_c).powi(2) + (u_b - p_b).powi(2)).sqrt(),
        d + ((u_c - p_c).powi(2) + (p_b - l_b).powi(2)).sqrt(),
    ];
    Some(Unpaired {
        test: "two-proportion z-test",
        baseline: p_b,
        candidate: p_c,
        difference: d,
        ci,
        p_value,
    })
}

/// Two means from independent samples: Welch's t-test (scipy's `ttest_ind(equal_var=False)`)
/// with the Welch–Satterthwaite degrees of freedom, and its interval for the difference.
pub fn welch(baseline: &Moments, candidate: &Moments, confidence: f64) -> Option<Unpaired> {
    let (n_b, n_c) = (baseline.count() as f64, candidate.count() as f64);
    let (v_b, v_c) = (baseline.variance()?, candidate.variance()?);
    let (a, b) = (v_b / n_b, v_c / n_c);
    let se = (a + b).sqrt();
    let d = candidate.mean() - baseline.mean();
    if se.is_nan() || se <= 0.0 {
        return Some(Unpaired {
            test: "Welch's t-test",
            baseline: baseline.mean(),
            candidate: candidate.mean(),
            difference: d,
            ci: [d, d],
            p_value: if d == 0.0 { 1.0 } else { 0.0 },
        });
    }
    let df = (a + b).powi(2) / (a * a / (n_b - 1.0) + b * b / (n_c - 1.0));
    let t = t_critical(confidence, df);
    Some(Unpaired {
        test: "Welch's t-test",
        baseline: baseline.mean(),
        candidate: candidate.mean(),
        difference: d,
        ci: [d - t * se, d + t * se],
        p_value: t_two_sided_p(d / se, df),
    })
}

/// The interval of a difference between two matched proportions, candidate − baseline, from
/// the rows that changed verdict: Agresti and Min's adjusted Wald interval (Statistics in
/// Medicine 24, 2005), half a row added to each cell of the 2×2 table. Where every row agrees
/// it still has a width (no evidence is not evidence of no difference), and it stays in
/// [−1, 1].
pub fn matched_pairs_interval(
    regressed: u64,
    improved: u64,
    rows: u64,
    confidence: f64,
) -> [f64; 2] {
    let z = z_critical(confidence);
    let m = rows as f64 + 2.0;
    let up = (improved as f64 + 0.5) / m;
    let down = (regressed as f64 + 0.5) / m;
    let center = up - down;
    let half = z * (((up + down) - center * center) / m).sqrt();
    [(center - half).max(-1.0), (center + half).min(1.0)]
}

/// The test behind a paired difference's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairedTest {
    /// Pass / fail on both sides, rows independent: McNemar's exact test on the discordant rows.
    McNemarExact { regressed: u64, improved: u64 },
    /// Scores (or clustered rows): a t-test on the per-row differences with the standard
    /// error's degrees of freedom.
    PairedT,
}

/// Inference on per-row differences candidate − baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub rows: u64,
    pub estimate: f64,
    pub se: StandardError,
    /// The interval at the confidence asked: for pass / fail rows taken as independent,
    /// Agresti and Min's ([`matched_pairs_interval`]); otherwise the t interval with the
    /// error's degrees of freedom.
    pub ci: [f64; 2],
    pub p_value: f64,
    /// The test's name as reports print it.
    pub test: String,
    /// The minimum detectable effect at `POWER` for this many rows. Where every row agrees
    /// (a standard error of 0) it comes from the row count: the error of Agresti and Min's
    /// interval with no discordant row, half a row added to each cell (1 / (rows + 2)), never
    /// a 0 that would claim any difference is detectable.
    pub mde: f64,
}

/// The paired difference of a sample of per-row differences; None below two rows (clusters).
pub fn paired(diffs: &Sample, test: PairedTest, confidence: f64) -> Option<Paired> {
    let se = diffs.standard_error()?;
    let estimate = diffs.mean();
    let half = t_critical(confidence, se.df) * se.se;
    let ci = match (test, se.clusters) {
        (
            PairedTest::McNemarExact {
                regressed,
                improved,
            },
            None,
        ) => matched_pairs_interval(regressed, improved, diffs.count(), confidence),
        _ => [estimate - half, estimate + half],
    };
    let t_p = || {
        if se.se > 0.0 {
            t_two_sided_p(estimate / se.se, se.df)
        } else if estimate == 0.0 {
            1.0
        } else {
            0.0
        }
    };
    let (p_value, test) = match (test, se.clusters) {
        (
            PairedTest::McNemarExact {
                regressed,
                improved,
            },
            None,
        ) => (
            mcnemar_exact(regressed, improved),
            "McNemar's exact test".to_string(),
        ),
        (_, Some(g)) => (
            t_p(),
            format!("clustered t-test, {g} clusters, {} df", g - 1),
        ),
        (PairedTest::PairedT, None) => (t_p(), "paired t-test".to_string()),
    };
    Some(Paired {
        rows: diffs.count(),
        estimate,
        se,
        ci,
        p_value,
        test,
        mde: minimum_detectable_effect(
            if se.se > 0.0 {
                se.se
            } else {
                1.0 / (diffs.count() as f64 + 2.0)
            },
            confidence,
            POWER,
        ),
    })
}

/// What repetitions did to a mean's standard error (Miller, section 3): with K answers a row,
/// the variance of a row's mean is σ²_between + σ²_within / K; with one answer it would have
/// been σ²_between + σ²_within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepetitionGain {
    /// The standard error with the repetitions.
    pub se: f64,
    /// The standard error one answer a row would have had.
    pub se_one: f64,
    /// Mean answers per row.
    pub repetitions: f64,
}

/// From the row means' moments, the mean within-row sample variance and the mean number of
/// answers a row.
pub fn repetition_gain(
    row_means: &Moments,
    mean_within_variance: f64,
    repetitions: f64,
) -> Option<RepetitionGain> {
    let n = row_means.count() as f64;
    let variance = row_means.variance()?;
    let one = variance + mean_within_variance * (1.0 - 1.0 / repetitions.max(1.0));
    Some(RepetitionGain {
        se: (variance / n).sqrt(),
        se_one: (one.max(0.0) / n).sqrt(),
        repetitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn normal_quantiles_and_cdf_match_scipy() {
        // scipy.stats.norm.ppf / cdf.
        for (p, z) in [
            (0.975, 1.959_963_984_540_054),
            (0.995, 2.575_829_303_548_900_4),
            (0.95, 1.644_853_626_951_472_2),
            (0.8, 0.841_621_233_572_914_2),
            (0.5, 0.0),
            (0.001, -3.090_232_306_167_813_5),
            (1e-10, -6.361_340_902_404_056),
        ] {
            assert!(close(normal_quantile(p), z, 1e-12), "ppf({p})");
            assert!(close(normal_cdf(z), p, 1e-12), "cdf({z})");
        }
    }

    #[test]
    fn t_distribution_matches_scipy() {
        // scipy.stats.t.ppf(0.975, df) and t.sf(t, df) * 2.
        for (df, q) in [
            (1.0, 12.706_204_736_174_694),
            (2.0, 4.302_652_729_749_462),
            (5.0, 2.570_581_835_636_314_6),
            (10.0, 2.228_138_851_986_274),
            (30.0, 2.042_272_456_301_237_8),
            (163.0, 1.974_624_620_966_361),
        ] {
            assert!(close(t_quantile(0.975, df), q, 1e-10), "t.ppf(0.975, {df})");
            assert!(close(t_two_sided_p(q, df), 0.05, 1e-10), "p at t.ppf, {df}");
        }
        assert!(close(
            t_two_sided_p(2.0, 10.0),
            0.073_388_034_770_740_37,
            1e-10
        ));
        assert!(close(t_cdf(-1.0, 3.0), 0.195_501_109_477_885_24, 1e-10));
    }

    #[test]
    fn binomial_tails_and_mcnemar_match_scipy() {
        // scipy.stats.binom.cdf; statsmodels mcnemar(exact=True).pvalue.
        assert!(close(binomial_cdf(3, 10, 0.5), 0.171_875, 1e-12));
        assert!(close(binomial_cdf(0, 5, 0.5), 0.031_25, 1e-12));
        assert!(close(mcnemar_exact(2, 9), 0.065_429_687_5, 1e-12));
        assert!(close(mcnemar_exact(5, 5), 1.0, 1e-12));
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!(close(mcnemar_exact(0, 10), 0.001_953_125, 1e-12));
    }

    #[test]
    fn miller_164_questions_at_83_6_percent_have_an_error_of_2_9_points() {
        let mut s = Sample::new(false);
        for i in 0..164 {
            s.push(if i < 137 { 1.0 } else { 0.0 }, None);
        }
        let se = s.standard_error().unwrap().se;
        assert!((se - 0.029).abs() < 0.0005, "{se}");
    }

    #[test]
    fn clustered_errors_use_the_cluster_sums() {
        // Two clusters that agree inside and disagree between: the clustered error is larger.
        let mut plain = Sample::new(false);
        let mut clustered = Sample::new(true);
        for (x, c) in [
            (1.0, "a"),
            (1.0, "a"),
            (0.0, "b"),
            (0.0, "b"),
            (1.0, "c"),
            (0.0, "c"),
        ] {
            plain.push(x, Some(c));
            clustered.push(x, Some(c));
        }
        let p = plain.standard_error().unwrap();
        let c = clustered.standard_error().unwrap();
        assert_eq!(c.clusters, Some(3));
        assert_eq!(c.df, 2.0);
        // Σ_c (S_c − n_c x̄)² = 1 + 1 + 0; × 3/2; / 36.
        assert!(close(c.se, (1.5 * 2.0 / 36.0_f64).sqrt(), 1e-12));
        assert!(c.se > p.se);
    }

    #[test]
    fn planning_and_detectable_effects() {
        // (1.96 + 0.8416)² × 0.5 / 0.05² = 1569.8 → 1570 rows.
        assert_eq!(rows_for_variance(0.5, 0.05, 0.95, POWER), Some(1570));
        let mde = minimum_detectable_effect(0.01, 0.95, POWER);
        assert!(close(mde, 0.028_015_852, 1e-6));
        assert_eq!(rows_needed(100, 0.2, 0.1), Some(400));
        assert_eq!(rows_needed(100, 0.2, 0.0), None);
    }

    #[test]
    fn plans_count_rows_and_repetitions() {
        // The worst case: two uncorrelated pass rates of 50%, variance 0.5 a row.
        let line = plan_line(0.5, 1, 100, 0.05, 0.95);
        assert_eq!(line.rows_needed, Some(1570));
        assert!(close(line.detectable_with_dataset, 0.198_1, 1e-3));
        // Repetitions shrink only the within-row part.
        assert!(close(paired_variance_from_one(0.1, 0.2, 1), 0.6, 1e-12));
        assert!(close(paired_variance_from_one(0.1, 0.2, 4), 0.3, 1e-12));
        let more = plan_line(paired_variance_from_one(0.1, 0.2, 4), 4, 100, 0.05, 0.95);
        assert!(more.rows_needed < line.rows_needed);
    }

    #[test]
    fn repetitions_shrink_the_error_by_the_within_row_share() {
        // Row means 0.5 ± ...; within-row variance 0.25 over 4 answers a row.
        let means = Moments::from_sums(4, 2.0, 1.25);
        let gain = repetition_gain(&means, 0.25, 4.0).unwrap();
        assert!(gain.se_one > gain.se);
        let between = means.variance().unwrap();
        assert!(close(
            gain.se_one,
            ((between + 0.25 * 0.75) / 4.0).sqrt(),
            1e-12
        ));
    }

    #[test]
    fn rows_that_all_agree_have_no_zero_error_and_a_detectable_effect_from_their_count() {
        let mut d = Sample::new(false);
        for _ in 0..20 {
            d.push(0.0, None);
        }
        let test = PairedTest::McNemarExact {
            regressed: 0,
            improved: 0,
        };
        let p = paired(&d, test, 0.95).unwrap();
        assert_eq!(p.se.se, 0.0);
        // Agresti and Min's interval keeps a width, and the detectable effect is that of its
        // error with no discordant row: (z + z_power) / (rows + 2).
        assert!(p.ci[0] < -0.05 && p.ci[1] > 0.05, "{:?}", p.ci);
        assert!(
            close(p.mde, (1.959_964 + 0.841_621) / 22.0, 1e-5),
            "{}",
            p.mde
        );
        // As JSON the error is null with the reason, never 0.
        let e = Estimate::proportion(20.0, 20.0, 0.0, 0.95);
        let json = serde_json::to_value(e).unwrap();
        assert!(json["se"].is_null());
        assert_eq!(json["se_note"], NO_VARIATION);
        assert!(json["ci"][0].as_f64().unwrap() < 0.9);
    }

    #[test]
    fn a_paired_difference_names_its_test() {
        let mut d = Sample::new(false);
        for x in [1.0, 1.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0] {
            d.push(x, None);
        }
        let mc = paired(
            &d,
            PairedTest::McNemarExact {
                regressed: 1,
                improved: 4,
            },
            0.95,
        )
        .unwrap();
        assert_eq!(mc.test, "McNemar's exact test");
        assert!(close(mc.p_value, 0.375, 1e-12));
        let t = paired(&d, PairedTest::PairedT, 0.95).unwrap();
        assert_eq!(t.test, "paired t-test");
        assert!(t.ci[0] < t.estimate && t.estimate < t.ci[1]);
    }

    /// The numbers scipy and statsmodels computed on fixed data (tests/stats/reference.py);
    /// `RUNNER_STATS_REFERENCE` names a freshly computed file to check instead.
    #[test]
    fn runner_agrees_with_scipy_and_statsmodels() {
        let text = match std::env::var("RUNNER_STATS_REFERENCE") {
            Ok(path) => std::fs::read_to_string(path).expect("the reference file"),
            Err(_) => include_str!("../../tests/stats/reference.json").to_string(),
        };
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let floats =
            |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(f).collect() };
        let tol = 1e-9;
        let confidence = f(&r["confidence"]);

        for case in r["distributions"]["normal"].as_array().unwrap() {
            let (p, q) = (f(&case["p"]), f(&case["quantile"]));
            assert!(close(normal_quantile(p), q, tol), "norm.ppf({p})");
        }
        for case in r["distributions"]["t"].as_array().unwrap() {
            let df = f(&case["df"]);
            if let Some(q) = case["quantile"].as_f64() {
                let p = f(&case["p"]);
                assert!(close(t_quantile(p, df), q, tol), "t.ppf({p}, {df})");
            } else {
                let (t, p) = (f(&case["t"]), f(&case["two_sided_p"]));
                assert!(close(t_two_sided_p(t, df), p, tol), "2 t.sf({t}, {df})");
            }
        }
        for case in r["distributions"]["binomial"].as_array().unwrap() {
            let (k, n) = (case["k"].as_u64().unwrap(), case["n"].as_u64().unwrap());
            assert!(
                close(binomial_cdf(k, n, 0.5), f(&case["cdf"]), tol),
                "binom.cdf({k}, {n})"
            );
        }

        // Miller's worked example: 164 questions, the standard error about 2.9 points.
        let miller = &r["miller"];
        let mut s = Sample::new(false);
        for x in floats(&miller["values"]) {
            s.push(x, None);
        }
        let e = Estimate::normal(s.mean(), s.standard_error().unwrap().se, confidence);
        assert!(close(e.se, f(&miller["se"]), tol));
        assert!((e.se * 100.0 - 2.9).abs() < 0.05);
        assert!(close(e.ci[0], f(&miller["ci"][0]), tol));
        assert!(close(e.ci[1], f(&miller["ci"][1]), tol));
        let w = Estimate::proportion(137.0, 164.0, e.se, confidence);
        assert!(close(w.ci[0], f(&miller["wilson"][0]), tol));
        assert!(close(w.ci[1], f(&miller["wilson"][1]), tol));

        // A judge against people's labels: Cohen's kappa with its standard error and interval.
        for case in r["kappa"].as_array().unwrap() {
            let t: Vec<u64> = case["table"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()))
                .collect();
            let k = cohens_kappa(&[[t[0], t[1]], [t[2], t[3]]], confidence).unwrap();
            assert!(close(k.kappa, f(&case["kappa"]), tol), "{case}");
            assert!(close(k.se, f(&case["se"]), tol), "{case}");
            assert!(close(k.ci[0], f(&case["ci"][0]), tol), "{case}");
            assert!(close(k.ci[1], f(&case["ci"][1]), tol), "{case}");
        }

        // A versus B: the win rate (ties half), its Wilson interval and the sign test.
        for case in r["pairwise"].as_array().unwrap() {
            let n = |k: &str| case[k].as_u64().unwrap() as usize;
            let outcomes: Vec<crate::pairwise::Outcome> = [
                (crate::pairwise::Outcome::Win, n("wins")),
                (crate::pairwise::Outcome::Tie, n("ties")),
                (crate::pairwise::Outcome::Loss, n("losses")),
            ]
            .iter()
            .flat_map(|(o, k)| std::iter::repeat_n(*o, *k))
            .collect();
            let t = crate::pairwise::tally(&outcomes, confidence);
            assert!(close(t.win_rate, f(&case["win_rate"]), tol), "{case}");
            assert!(close(t.ci[0], f(&case["ci"][0]), tol), "{case}");
            assert!(close(t.ci[1], f(&case["ci"][1]), tol), "{case}");
            assert!(close(t.sign_test_p, f(&case["sign_test_p"]), tol), "{case}");
        }

        // Small samples, where the normal interval leaves [0, 1] or collapses.
        let small = &r["small_samples"];
        for case in small["wilson"].as_array().unwrap() {
            let got = wilson_interval(f(&case["passed"]), f(&case["rows"]), confidence);
            assert!(close(got[0], f(&case["ci"][0]), tol), "{case}");
            assert!(close(got[1], f(&case["ci"][1]), tol), "{case}");
        }
        for case in small["matched"].as_array().unwrap() {
            let n = |k: &str| case[k].as_u64().unwrap();
            let got = matched_pairs_interval(n("regressed"), n("improved"), n("rows"), confidence);
            assert!(close(got[0], f(&case["ci"][0]), tol), "{case}");
            assert!(close(got[1], f(&case["ci"][1]), tol), "{case}");
        }

        // Clustered errors: a mean, and paired differences with the clustered t-test.
        for (key, test) in [("clustered", false), ("clustered_paired", true)] {
            let case = &r[key];
            let mut s = Sample::new(true);
            let clusters = case["clusters"].as_array().unwrap();
            for (x, c) in floats(&case["values"]).into_iter().zip(clusters) {
                s.push(x, c.as_str());
            }
            let want = &case["clustered"];
            let se = s.standard_error().unwrap();
            assert!(close(s.mean(), f(&want["estimate"]), tol), "{key}");
            assert!(close(se.se, f(&want["se"]), tol), "{key} se");
            assert_eq!(se.df, f(&want["df"]), "{key} df");
            let p = paired(&s, PairedTest::PairedT, confidence).unwrap();
            assert!(close(p.ci[0], f(&want["ci"][0]), tol), "{key} ci");
            assert!(close(p.ci[1], f(&want["ci"][1]), tol), "{key} ci");
            assert!(close(p.p_value, f(&want["p_value"]), tol), "{key} p");
            if !test {
                // The naive error understates it.
                assert!(se.se > f(&case["naive_se"]));
            }
        }

        // Paired scores: the paired t-test finds what the unpaired test does not.
        let case = &r["paired_scores"];
        let mut d = Sample::new(false);
        for (c, b) in floats(&case["candidate"])
            .into_iter()
            .zip(floats(&case["baseline"]))
        {
            d.push(c - b, None);
        }
        let p = paired(&d, PairedTest::PairedT, confidence).unwrap();
        let want = &case["paired"];
        assert_eq!(p.test, "paired t-test");
        assert!(close(p.estimate, f(&want["estimate"]), tol));
        assert!(close(p.se.se, f(&want["se"]), tol));
        assert!(close(p.ci[0], f(&want["ci"][0]), tol));
        assert!(close(p.ci[1], f(&want["ci"][1]), tol));
        assert!(close(p.p_value, f(&want["p_value"]), 1e-7), "{}", p.p_value);
        assert!(p.p_value < 0.05 && f(&case["unpaired_welch_p_value"]) > 0.05);
        // Unpaired, as production traffic is compared: scipy's Welch test.
        let (mut b, mut c) = (Moments::default(), Moments::default());
        floats(&case["baseline"])
            .into_iter()
            .for_each(|x| b.push(x));
        floats(&case["candidate"])
            .into_iter()
            .for_each(|x| c.push(x));
        let w = welch(&b, &c, confidence).unwrap();
        assert_eq!(w.test, "Welch's t-test");
        assert!(
            close(w.p_value, f(&case["unpaired_welch_p_value"]), tol),
            "{}",
            w.p_value
        );

        // Paired pass / fail: McNemar's exact test finds what two bare rates do not.
        let case = &r["paired_pass_fail"];
        let mut d = Sample::new(false);
        for (c, b) in floats(&case["candidate"])
            .into_iter()
            .zip(floats(&case["baseline"]))
        {
            d.push(c - b, None);
        }
        let test = PairedTest::McNemarExact {
            regressed: case["regressed"].as_u64().unwrap(),
            improved: case["improved"].as_u64().unwrap(),
        };
        let p = paired(&d, test, confidence).unwrap();
        let want = &case["paired"];
        assert_eq!(p.test, "McNemar's exact test");
        assert!(close(p.p_value, f(&case["mcnemar_exact_p_value"]), tol));
        assert!(close(p.se.se, f(&want["se"]), tol));
        assert!(close(p.ci[0], f(&case["agresti_min_ci"][0]), tol));
        assert!(close(p.ci[1], f(&case["agresti_min_ci"][1]), tol));
        assert!(p.p_value < 0.05 && f(&case["unpaired_two_proportion_p_value"]) > 0.05);
        // Unpaired, as production error rates are compared: statsmodels' z-test.
        let sum = |key: &str| floats(&case[key]).iter().sum::<f64>();
        let z = two_proportion(sum("baseline"), 60.0, sum("candidate"), 60.0, confidence).unwrap();
        assert!(
            close(z.p_value, f(&case["unpaired_two_proportion_p_value"]), tol),
            "{}",
            z.p_value
        );
        assert!(z.ci[0] < z.difference && z.difference < z.ci[1] && z.ci[0] >= -1.0);

        // Power: rows needed for 80 % power.
        for case in r["power"].as_array().unwrap() {
            let (sd, detect, rows) = (f(&case["sd"]), f(&case["detect"]), f(&case["rows"]));
            assert_eq!(
                rows_for_variance(sd * sd, detect, confidence, POWER),
                Some(rows.ceil() as u64),
                "sd {sd}, detect {detect}"
            );
        }
    }
}
