"""Reference numbers for runner's statistics (src/stats.rs), computed with scipy and statsmodels.

Writes JSON: the fixed data of every case and what scipy / statsmodels make of it. runner's
own test (`cargo test --lib stats::`) recomputes each number from the same data and must agree;
tests/stats/run.sh runs this script with pinned versions and checks the committed fixture
(tests/stats/reference.json) still matches what they say.

Usage: python reference.py OUT.json
"""

import json
import sys

import numpy as np
import statsmodels
import scipy
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95


def normal_interval(mean, se):
    low, high = stats.norm.interval(CONFIDENCE, loc=mean, scale=se)
    return [float(low), float(high)]


def clustered(y, groups):
    """Cluster-robust standard error of a mean: OLS on a constant, statsmodels' default
    small-sample correction, t inference with G - 1 degrees of freedom."""
    fit = sm.OLS(np.asarray(y, dtype=float), np.ones(len(y))).fit(
        cov_type="cluster", cov_kwds={"groups": np.asarray(groups)}, use_t=True
    )
    low, high = fit.conf_int(alpha=1 - CONFIDENCE)[0]
    return {
        "estimate": float(fit.params[0]),
        "se": float(fit.bse[0]),
        "ci": [float(low), float(high)],
        "p_value": float(fit.pvalues[0]),
        "df": float(fit.df_resid_inference),
    }


def miller():
    # Miller (2024), section 2: 164 questions at 83.6 % correct; the standard error is about
    # 2.9 percentage points. 137 of 164 is 83.5 %.
    x = [1.0] * 137 + [0.0] * 27
    se = float(stats.sem(x))
    return {
        "name": "miller_164_questions",
        "values": x,
        "mean": float(np.mean(x)),
        "se": se,
        "ci": normal_interval(float(np.mean(x)), se),
        "wilson": wilson(137, 164),
    }


def wilson(count, nobs):
    low, high = proportion_confint(count, nobs, alpha=1 - CONFIDENCE, method="wilson")
    return [float(low), float(high)]


def agresti_min(regressed, improved, rows):
    """Agresti and Min (2005): the Wald interval of a difference of matched proportions with
    half a row added to each cell of the 2x2 table (statsmodels has no paired interval; this
    is the published formula, written out with numpy)."""
    z = stats.norm.ppf(1 - (1 - CONFIDENCE) / 2)
    m = rows + 2.0
    up, down = (improved + 0.5) / m, (regressed + 0.5) / m
    center = up - down
    half = z * np.sqrt(((up + down) - center**2) / m)
    return [float(max(center - half, -1.0)), float(min(center + half, 1.0))]


def small_samples():
    # Where the normal interval fails: every row passing, one row failing of twenty, and a
    # paired table with no discordant rows (the normal interval has width 0).
    return {
        "wilson": [
            {"passed": k, "rows": n, "ci": wilson(k, n)}
            for k, n in [(20, 20), (19, 20), (0, 5), (6, 7), (83, 100)]
        ],
        "matched": [
            {"regressed": b, "improved": c, "rows": n, "ci": agresti_min(b, c, n)}
            for b, c, n in [(0, 0, 5), (0, 6, 7), (8, 0, 60), (8, 22, 200)]
        ],
    }


def clustered_case():
    # 36 questions from 9 source documents (4 each); questions about one document tend to be
    # right or wrong together, so the clustered error is well above the naive one.
    scores = []
    groups = []
    pattern = [
        [1, 1, 1, 1],
        [0, 0, 0, 1],
        [1, 1, 1, 0],
        [0, 0, 0, 0],
        [1, 1, 1, 1],
        [1, 1, 0, 1],
        [0, 1, 0, 0],
        [1, 1, 1, 1],
        [0, 0, 1, 0],
    ]
    for doc, row in enumerate(pattern):
        for value in row:
            scores.append(float(value))
            groups.append(f"doc{doc}")
    naive = float(stats.sem(scores))
    return {
        "name": "clustered_documents",
        "values": scores,
        "clusters": groups,
        "naive_se": naive,
        "clustered": clustered(scores, groups),
    }


def paired_scores_case():
    # Two versions scored on 40 rows of very different difficulty: the candidate is a little
    # better on nearly every row. Unpaired, the row-to-row spread hides it (Welch p > 0.05);
    # paired, the per-row differences show it (p < 0.05).
    baseline = [round(0.2 + 0.6 * ((i * 37) % 40) / 39, 4) for i in range(40)]
    bumps = [0.03, 0.05, -0.01, 0.04, 0.02]
    candidate = [round(min(1.0, b + bumps[i % 5]), 4) for i, b in enumerate(baseline)]
    diffs = np.subtract(candidate, baseline)
    paired = stats.ttest_rel(candidate, baseline)
    ci = paired.confidence_interval(confidence_level=CONFIDENCE)
    unpaired = stats.ttest_ind(candidate, baseline, equal_var=False)
    return {
        "name": "paired_scores",
        "baseline": baseline,
        "candidate": candidate,
        "paired": {
            "estimate": float(np.mean(diffs)),
            "se": float(stats.sem(diffs)),
            "ci": [float(ci.low), float(ci.high)],
            "p_value": float(paired.pvalue),
            "df": float(paired.df),
        },
        "unpaired_welch_p_value": float(unpaired.pvalue),
    }


def paired_pass_fail_case():
    # Pass / fail on 60 rows: 40 pass on both, 8 regress, none improves, 12 fail on both.
    # Unpaired, pass rates of 80.0 % and 66.7 % are not told apart (two-proportion z-test
    # p > 0.05); paired, McNemar's exact test on the 8 discordant rows, all one way, is
    # p < 0.01.
    baseline = [1.0] * 40 + [1.0] * 8 + [0.0] * 12
    candidate = [1.0] * 40 + [0.0] * 8 + [0.0] * 12
    diffs = np.subtract(candidate, baseline)
    table = [[40, 8], [0, 12]]
    exact = mcnemar(table, exact=True)
    paired = stats.ttest_rel(candidate, baseline)
    ci = paired.confidence_interval(confidence_level=CONFIDENCE)
    from statsmodels.stats.proportion import proportions_ztest

    z_stat, z_p = proportions_ztest(
        [sum(candidate), sum(baseline)], [len(candidate), len(baseline)]
    )
    return {
        "name": "paired_pass_fail",
        "baseline": baseline,
        "candidate": candidate,
        "regressed": 8,
        "improved": 0,
        "mcnemar_exact_p_value": float(exact.pvalue),
        "paired": {
            "estimate": float(np.mean(diffs)),
            "se": float(stats.sem(diffs)),
            "ci": [float(ci.low), float(ci.high)],
            "df": float(paired.df),
        },
        "agresti_min_ci": agresti_min(8, 0, 60),
        "unpaired_two_proportion_p_value": float(z_p),
    }


def clustered_paired_case():
    # Per-row differences in 6 clusters of 5: the clustered t-test (G - 1 = 5 df).
    diffs = []
    groups = []
    for g in range(6):
        for i in range(5):
            diffs.append(float(((g * 7 + i * 3) % 5 - 1.5) / 10 + (0.1 if g % 2 else -0.02)))
            groups.append(f"c{g}")
    return {
        "name": "clustered_paired",
        "values": diffs,
        "clusters": groups,
        "clustered": clustered(diffs, groups),
    }


def power_case():
    # Rows needed for 80 % power to detect D with a two-sided z-test at 95 %, one sample of
    # per-row differences with standard deviation sd (statsmodels' NormalIndPower, ratio 0).
    from statsmodels.stats.power import NormalIndPower

    out = []
    for sd, d in [(0.7071067811865476, 0.05), (0.3, 0.02), (0.5, 0.1)]:
        n = NormalIndPower().solve_power(
            effect_size=d / sd, alpha=1 - CONFIDENCE, power=0.8, ratio=0
        )
        out.append({"sd": sd, "detect": d, "rows": float(n)})
    return out


def kappa_case():
    # A judge's pass / fail against people's labels on the same rows: rows are the judge, columns
    # the people ([pass, fail]); statsmodels' cohens_kappa (Fleiss-Cohen-Everitt variance).
    from statsmodels.stats.inter_rater import cohens_kappa

    out = []
    for table in [[[40, 5], [10, 45]], [[12, 3], [2, 8]], [[20, 0], [0, 20]], [[30, 10], [10, 30]], [[7, 6], [5, 2]]]:
        res = cohens_kappa(np.asarray(table, dtype=float))  # its intervals are at 95 %
        out.append({
            "table": table,
            "kappa": float(res.kappa),
            "se": float(res.std_kappa),
            "ci": [float(res.kappa_low), float(res.kappa_upp)],
        })
    return out


def pairwise_case():
    # A versus B: (wins, ties, losses) of the candidate; the win rate counts ties half, its
    # Wilson interval takes wins + ties / 2 as the count, and the sign test is the exact
    # two-sided binomial test of wins against losses at one half (ties left out).
    out = []
    for wins, ties, losses in [(6, 0, 0), (0, 6, 0), (7, 2, 1), (12, 5, 3), (3, 1, 1), (40, 30, 30)]:
        rows = wins + ties + losses
        points = wins + ties / 2
        decided = wins + losses
        p = float(stats.binomtest(wins, decided, 0.5).pvalue) if decided else 1.0
        out.append({
            "wins": wins, "ties": ties, "losses": losses,
            "win_rate": points / rows,
            "ci": wilson(points, rows),
            "sign_test_p": p,
        })
    return out


def distributions():
    norm = [
        {"p": p, "quantile": float(stats.norm.ppf(p))}
        for p in [1e-8, 0.001, 0.025, 0.1, 0.5, 0.8, 0.9, 0.95, 0.975, 0.995]
    ]
    t = []
    for df in [1, 2, 3, 5, 10, 29, 59, 163, 1000]:
        for p in [0.9, 0.975, 0.995]:
            t.append({"df": df, "p": p, "quantile": float(stats.t.ppf(p, df))})
        for value in [0.5, 2.0, 4.5]:
            t.append({"df": df, "t": value, "two_sided_p": float(2 * stats.t.sf(value, df))})
    binom = [
        {"k": k, "n": n, "cdf": float(stats.binom.cdf(k, n, 0.5))}
        for k, n in [(0, 1), (1, 7), (3, 10), (10, 40), (200, 500)]
    ]
    return {"normal": norm, "t": t, "binomial": binom}


def main():
    out = {
        "generated_by": "tests/stats/reference.py",
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "confidence": CONFIDENCE,
        "distributions": distributions(),
        "miller": miller(),
        "clustered": clustered_case(),
        "clustered_paired": clustered_paired_case(),
        "paired_scores": paired_scores_case(),
        "paired_pass_fail": paired_pass_fail_case(),
        "power": power_case(),
        "small_samples": small_samples(),
        "pairwise": pairwise_case(),
        "kappa": kappa_case(),
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
