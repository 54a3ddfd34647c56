//! Command-line syntax: clap derive types and `--help` text only; no I/O, no logic.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const ROOT_EXAMPLES: &str = "\
Examples:
  runner prompt create support_greeting --template 'Hello {{name}}' --model gpt-4 --tag staging
  runner prompt update support_greeting --template-file greeting.txt -m 'Friendlier tone'
  runner tag set support_greeting staging --version 2
  runner prompt render support_greeting --tag production --var name=Ada
  runner tag history support_greeting
  runner experiment --prompt support_greeting --tag staging --dataset datasets/queries.csv

Exit codes: 0 success, 1 a check failed, 2 invalid input (nothing written), 3 operational failure.";

/// Treat prompts the way you treat code: versions, tags, experiments and a promotion gate.
#[derive(Debug, Parser)]
#[command(name = "runner", version, after_help = ROOT_EXAMPLES, max_term_width = 100)]
pub struct Cli {
    /// The store: an SQLite file, a PostgreSQL database as postgres://USER@HOST:PORT/DBNAME
    /// (the password from PGPASSWORD or ~/.pgpass), or a runner server's https:// URL (the token
    /// from RUNNER_TOKEN or `runner login`) [default: `db` in runner.toml, else runner.db].
    #[arg(
        long,
        global = true,
        env = "RUNNER_DB",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    pub db: Option<PathBuf>,

    /// Project file with defaults [default: runner.toml in the working directory, if present].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Who is making the change (recorded on versions and tag moves). Default: $USER.
    #[arg(long, global = true, env = "RUNNER_AUTHOR", value_name = "NAME")]
    pub author: Option<String>,

    /// Colour verdicts, changes and errors: auto (on a terminal, unless NO_COLOR is set;
    /// CLICOLOR_FORCE=1 forces it), always or never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: crate::report::colour::Choice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, update, inspect and render prompts.
    #[command(subcommand)]
    Prompt(PromptCommand),
    /// Point tags at versions, list them and read their history.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Move a tag back to the version it pointed at before its last change.
    #[command(
        after_help = "Examples:\n  runner rollback support_greeting production -m 'v3 raised complaints'"
    )]
    Rollback(RollbackArgs),
    /// Write prompts as reviewable text files, one folder per prompt.
    #[command(
        after_help = "Examples:\n  runner export prompts/\n  runner export prompts/ support_greeting billing_faq"
    )]
    Export(ExportArgs),
    /// Read prompts written by `runner export` into this store, all or nothing.
    #[command(after_help = "Examples:\n  runner --db fresh.db import prompts/")]
    Import(ImportArgs),
    /// Make the store match a folder of prompt files (prompts as code), or check that it does.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
    /// Write prompt files from the store: the latest versions, or the versions under a tag.
    #[command(after_help = PULL_EXAMPLES)]
    Pull(PullArgs),
    /// Bring the store's schema to this runner's newest (commands that only read never do).
    #[command(after_help = "Examples:\n  runner --db team.db migrate")]
    Migrate,
    /// Run a prompt version over a dataset against an OpenAI-compatible endpoint; list, show and
    /// resume experiments.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = EXPERIMENT_EXAMPLES
    )]
    Experiment(ExperimentArgs),
    /// Run the work items of a detached experiment (`experiment --detach`), alongside any
    /// number of other workers on the same store.
    #[command(after_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// Compare two versions side by side: metrics, then the rows that regressed and improved.
    #[command(after_help = COMPARE_EXAMPLES)]
    Compare(CompareArgs),
    /// Move a tag to another tag's version only when the evidence passes a gate (exit 1 if not).
    #[command(after_help = PROMOTE_EXAMPLES)]
    Promote(PromoteArgs),
    /// The whole loop offline in a temporary folder: prompt, versions, experiments, compare, promote.
    Demo(DemoArgs),
    /// Serve a deterministic OpenAI-compatible endpoint on loopback, for demos and CI dry runs.
    #[command(after_help = MOCK_EXAMPLES)]
    MockServer(MockServerArgs),
    /// Serve the store over HTTP: Phoenix's prompt, dataset and experiment routes, OTLP traces,
    /// rollouts and the web UI (for applications, the Phoenix client and your team).
    #[command(after_help = "\
Examples:
  runner serve                                   # http://127.0.0.1:6006, no auth (loopback only)
  runner serve --bind 0.0.0.0:6006 --token-file tokens.txt --read-token-file readers.txt
  curl -H 'Authorization: Bearer TOKEN' http://127.0.0.1:6006/v1/prompts/NAME/tags/production

Token files hold one token a line, TOKEN or NAME:TOKEN (at least 16 characters; # comments);
deploy:NAME:TOKEN in --token-file is a deploy token. Tag moves record the caller as api, api:NAME
for a named token, plus ' (WHO)' when the request sends X-Runner-Actor: WHO. Protected tags move
or go only for a deploy token, or with ?force=true or X-Runner-Force: true (else 403).
Writes need Content-Type: application/json (else 422); a request with an Origin must come from
the server's own origin; without tokens only loopback Host names are served (else 403).
The first line on stdout names the address the server listens on.")]
    Serve(ServeArgs),
    /// Try a version on one input: the answer streams in, then its latency, time to first
    /// token, tokens and finish reason; with --tags, two versions side by side.
    #[command(after_help = TRY_EXAMPLES)]
    Try(TryArgs),
    /// Make dataset files from what the store holds: production spans' template variables.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Whole-store operations: copy everything between SQLite files and PostgreSQL databases.
    #[command(subcommand)]
    Store(StoreCommand),
    /// How each version behaves in production, from the traces applications send to `runner
    /// serve`: requests, errors, latency, tokens, cost and feedback per version, with intervals.
    #[command(args_conflicts_with_subcommands = true, after_help = PRODUCTION_EXAMPLES)]
    Production(ProductionArgs),
    /// Roll a version out to a share of production lookups, stepped up, completed or rolled back
    /// by production evidence (`runner serve` decides; `evaluate` decides once without it).
    #[command(subcommand)]
    Canary(CanaryCommand),
    /// Check an evaluator (an LLM judge, a program) against people's labels before a gate rests
    /// on it.
    #[command(subcommand)]
    Judge(JudgeCommand),
    /// Tokens of the team server, kept in the store: create (the secret is shown once), list,
    /// revoke. Each has a role: read, ingest, write, promote, deploy or admin.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Keep a runner server's token for this user (a profile, mode 0600), so `--db URL` needs
    /// no RUNNER_TOKEN.
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// Forget the token kept for a runner server.
    #[command(after_help = "Examples:\n  runner logout https://runner.example.com")]
    Logout(LogoutArgs),
    /// Who the runner server at --db takes you for: the token's name and role.
    #[command(
        after_help = "Examples:\n  runner --db https://runner.example.com whoami\n  RUNNER_DB=https://runner.example.com runner whoami --json"
    )]
    Whoami(WhoamiArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token: its secret is printed once (on stdout) and only its hash is stored.
    #[command(after_help = TOKEN_EXAMPLES)]
    Create(TokenCreateArgs),
    /// List the tokens: name, role, who created each and when, expiry, revocation.
    #[command(after_help = "Examples:\n  runner token list\n  runner token list --json")]
    List(TokenListArgs),
    /// Revoke a token: the server refuses it within a second. It stays listed.
    #[command(after_help = "Examples:\n  runner token revoke ci")]
    Revoke(TokenRevokeArgs),
}

const TOKEN_EXAMPLES: &str = "\
Examples:
  runner token create ci --role promote --expires 90d
  runner token create checkout-app --role ingest
  RUNNER_TOKEN=$(runner token create release --role deploy --quiet)

Roles: read (lookups, lists), ingest (traces and feedback, for applications), write (versions,
unprotected tags, experiments), promote (write, and a protected tag moves only through a
promotion the server evaluates), deploy (moves protected tags by hand, recorded), admin (tokens,
imports). `runner serve` accepts the store's tokens beside its token files.";

const LOGIN_EXAMPLES: &str = "\
Examples:
  runner login https://runner.example.com            # reads the token from stdin
  echo \"$TOKEN\" | runner login http://127.0.0.1:6006 --profile local
  runner --db https://runner.example.com prompt list   # uses the kept token

The token is checked against the server before it is kept, in credentials.toml under the user's
config folder ($RUNNER_CONFIG_DIR, else $XDG_CONFIG_HOME/runner, else ~/.config/runner), mode
0600. RUNNER_TOKEN, when set, is used instead.";

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The token's name, recorded as the actor of what it writes (`api:NAME`).
    pub name: String,
    /// What it may do: read, ingest, write, promote, deploy or admin.
    #[arg(long)]
    pub role: String,
    /// When it stops working: a duration from now (90d, 12h, 30m) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Print the secret alone (for a script).
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print the token and its secret as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Print the tokens as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The runner server's address (https://…, or http:// on loopback).
    pub url: String,
    /// The profile's name (default: the server's host).
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The server whose token to forget (or name the profile with --profile).
    #[arg(required_unless_present = "profile")]
    pub url: Option<String>,
    /// The profile to forget.
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum JudgeCommand {
    /// How often an evaluator agrees with people's pass / fail labels on an experiment's rows:
    /// the agreement, the two-by-two table and Cohen's kappa with its interval.
    #[command(after_help = JUDGE_EXAMPLES)]
    Agreement(JudgeAgreementArgs),
}

const JUDGE_EXAMPLES: &str = "\
Examples:
  runner judge agreement --experiment last --eval judge:rubric.md --labels labels.csv
  runner judge agreement --experiment exp_3k2 --eval judge:rubric.md --labels labels.csv --json

labels.csv holds the experiment's row ids and people's verdicts:
  id,label
  q1,pass
  q2,fail
(label: pass/fail, true/false, yes/no or 1/0; or a score column from 0 to 1, 0.5 and up passing).
The evaluator runs on the experiment's stored answers (judge calls go through the response
cache); nothing is written but the cache. Kappa is agreement beyond chance: 1 is perfect, 0 no
better than chance; its interval says how sure that is with this many rows.";

#[derive(Debug, Args)]
pub struct JudgeAgreementArgs {
    /// The evaluator to check: judge:RUBRIC_FILE, or any other --eval spec but pairwise.
    #[arg(long = "eval", value_name = "SPEC")]
    pub eval: String,
    /// People's labels: CSV or JSONL with id and label (pass/fail) or score (0..1) columns.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// The experiment whose stored answers are judged: an id (or the start of one), a name, or
    /// `last`.
    #[arg(long, value_name = "ID|NAME")]
    pub experiment: String,
    /// The judge model [default: runner.toml's judge_model, else the experiment's].
    #[arg(long, value_name = "MODEL")]
    pub judge_model: Option<String>,
    /// The endpoint the judge is asked at [default: runner.toml, else OPENAI_BASE_URL].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Judge calls at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds before a judge call is abandoned.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
    /// Retries of a judge call that failed for a reason worth retrying.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_retries: u32,
    /// Ask the judge again instead of reading its earlier answers from the cache.
    #[arg(long)]
    pub fresh: bool,
    /// Disagreeing rows to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rows: usize,
    /// Confidence level of kappa's interval (0 to 1) [default: `confidence` in runner.toml,
    /// else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Start a rollout: `runner serve` answers lookups of TAG with the candidate for the step's
    /// share and the baseline (what TAG points at now) otherwise.
    #[command(after_help = CANARY_EXAMPLES)]
    Start(CanaryStartArgs),
    /// A rollout's step, share, each metric per arm with its interval, and what happens next.
    Status(CanaryTagArgs),
    /// Take the looks that are due now and record their decisions (for setups without a
    /// long-running `runner serve`, e.g. a cron job).
    Evaluate(CanaryTagArgs),
    /// Move a running rollout to its next step by hand (at the last step: complete it).
    Advance(CanaryTagArgs),
    /// Stop a running rollout: the candidate is no longer served and the tag stays.
    Stop(CanaryStopArgs),
}

const CANARY_EXAMPLES: &str = "\
Examples:
  runner canary start support_greeting --tag production --candidate staging
  runner canary start support_greeting --tag production --candidate 7 --steps 10,50,100 \\
      --step-after 500requests --unit-header X-Runner-Unit --metric error_rate \\
      --metric latency_p95:+20% --metric score:helpful --non-inferior 0.02
  runner canary status support_greeting
  runner canary stop support_greeting -m 'answers too long'

Each metric is a non-inferiority check: the candidate must be no worse than the baseline by more
than the margin (--non-inferior: 0.01 for error_rate, 0.05 for a score; latency_p95 takes +N%).
Looks come at every fifth of a step; each spends (1 - C) / K of the error budget over the K
planned looks (Bonferroni), so the chance of a wrong rollback over the whole rollout stays
within 1 - C.";

#[derive(Debug, Args)]
pub struct CanaryStartArgs {
    /// The prompt to roll out.
    #[arg(value_name = "PROMPT")]
    pub prompt: String,
    /// The tag applications fetch (its version now is the baseline).
    #[arg(long, value_name = "TAG", default_value = "production")]
    pub tag: String,
    /// The version to roll out: a tag, a version number or a version id.
    #[arg(long, value_name = "TAG|N|ID")]
    pub candidate: String,
    /// Percent of lookups served the candidate at each step, rising to 100 (default: runner.toml's
    /// [canary] steps, else 5,25,50,100).
    #[arg(long, value_name = "P,P,...", value_delimiter = ',')]
    pub steps: Vec<u32>,
    /// What ends a step: a duration (30m, 2h) or a number of candidate requests (500requests)
    /// (default: runner.toml's, else 30m).
    #[arg(long, value_name = "DURATION|Nrequests")]
    pub step_after: Option<String>,
    /// A request header naming the unit (user, session) whose arm stays fixed; without it each
    /// lookup is drawn independently.
    #[arg(long, value_name = "HEADER")]
    pub unit_header: Option<String>,
    /// What must stay non-inferior: error_rate, latency_p95:+20%, score:NAME (repeatable;
    /// default: runner.toml's, else error_rate).
    #[arg(long = "metric", value_name = "METRIC")]
    pub metrics: Vec<String>,
    /// The margin of error_rate and score metrics (absolute).
    #[arg(long, value_name = "D")]
    pub non_inferior: Option<f64>,
    /// Confidence over the whole rollout (default: runner.toml's, else 0.95).
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
    /// The tag that points at the candidate while the rollout runs (default: runner.toml's,
    /// else canary).
    #[arg(long, value_name = "TAG")]
    pub canary_tag: Option<String>,
    /// Why, recorded in the tag history.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CanaryTagArgs {
    /// The prompt.
    #[arg(value_name = "PROMPT")]
    pub prompt: String,
    /// The tag being rolled out.
    #[arg(long, value_name = "TAG", default_value = "production")]
    pub tag: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CanaryStopArgs {
    /// The prompt.
    #[arg(value_name = "PROMPT")]
    pub prompt: String,
    /// The tag being rolled out.
    #[arg(long, value_name = "TAG", default_value = "production")]
    pub tag: String,
    /// Why, recorded in the tag history.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
}

const PRODUCTION_EXAMPLES: &str = "\
Examples:
  runner production support_greeting                      # the last 24 hours, every version
  runner production support_greeting --since 7d --tag production
  runner production support_greeting --since 2026-12-01T00:00:00Z --until 2026-12-02T00:00:00Z --json
  runner production compare support_greeting --versions 3,4

Spans arrive at `runner serve` over OTLP (POST /v1/traces) and are linked to versions by
llm.prompt_template.version (an id, NAME@vN or NAME@TAG), gen_ai.prompt.name + gen_ai.prompt.version,
or runner.prompt.version_id. Spans of experiment runs (Phoenix's Experiment-… projects) are not
production traffic unless --experiments is given.";

#[derive(Debug, Args)]
pub struct ProductionArgs {
    #[command(subcommand)]
    pub command: Option<ProductionCommand>,
    /// The prompt whose versions' traffic to show.
    #[arg(value_name = "PROMPT")]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only the versions this tag pointed at during the window.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The time window of production traffic.
#[derive(Debug, Args, Clone)]
pub struct WindowArgs {
    /// Start of the window: a duration back from now (30m, 24h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "AGO|TIME", default_value = "24h")]
    pub since: String,
    /// End of the window (default now): a duration back from now or an RFC 3339 time.
    #[arg(long, value_name = "AGO|TIME")]
    pub until: Option<String>,
    /// Count the spans of experiment runs too (never production traffic by default).
    #[arg(long)]
    pub experiments: bool,
    /// Confidence level of the intervals (default: runner.toml's, else 0.95).
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum ProductionCommand {
    /// Compare two versions' production traffic: error rate and pass shares by the
    /// two-proportion z-test, latency and mean scores by Welch's t-test (unpaired).
    #[command(
        after_help = "Examples:\n  runner production compare support_greeting --versions 3,4\n  \
        runner production compare support_greeting --versions production,canary --since 2h --json"
    )]
    Compare(ProductionCompareArgs),
}

#[derive(Debug, Args)]
pub struct ProductionCompareArgs {
    /// The prompt whose versions to compare.
    #[arg(value_name = "PROMPT")]
    pub prompt: String,
    /// Baseline then candidate: version numbers, tags or version ids.
    #[arg(
        long,
        value_name = "BASE,CANDIDATE",
        value_delimiter = ',',
        required = true
    )]
    pub versions: Vec<String>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Write the template variables of a prompt's production spans as dataset rows (JSON
    /// Lines) for `runner experiment --dataset`, filtered by version, time, status and
    /// annotations.
    #[command(after_help = FROM_TRACES_EXAMPLES)]
    FromTraces(FromTracesArgs),
    /// Store a dataset file (CSV or JSON Lines) as the next version of a named dataset; the
    /// bytes are kept as they are, so `--dataset store:NAME` is the same evidence as the file.
    #[command(after_help = DATASET_STORE_EXAMPLES)]
    Push(DatasetPushArgs),
    /// The store's datasets with their latest version.
    List(DatasetListArgs),
    /// A dataset's versions, or one version (NAME@V) with its first rows.
    Show(DatasetShowArgs),
    /// Write a version of a dataset to a file, byte for byte as it was pushed.
    Pull(DatasetPullArgs),
}

const DATASET_STORE_EXAMPLES: &str = "\
Examples:
  runner dataset push datasets/queries.csv --name support_queries -m 'three new refund cases'
  runner dataset list
  runner dataset show support_queries@2
  runner dataset pull support_queries@1 --out queries-v1.csv
  runner experiment --prompt support_greeting --tag staging --dataset store:support_queries
  runner experiment --prompt support_greeting --tag staging --dataset store:support_queries@2

Versions never change: pushing the same bytes again adds nothing, other bytes add a version.
An experiment over store:NAME records the version it read (store:NAME@V) and the same hash as
an experiment over the file, so compare and promote treat the two as the same dataset.";

#[derive(Debug, Args)]
pub struct DatasetPushArgs {
    /// The dataset file: .csv (a header row) or .jsonl (one object a line).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The dataset's name in the store.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Why this version (kept with it).
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DatasetListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DatasetShowArgs {
    /// NAME (its versions) or NAME@V (one version and its first rows).
    #[arg(value_name = "NAME[@V]")]
    pub dataset: String,
    /// Rows shown of a version.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub rows: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DatasetPullArgs {
    /// NAME (the latest version) or NAME@V.
    #[arg(value_name = "NAME[@V]")]
    pub dataset: String,
    /// The file to write; its extension must be the version's format (.csv or .jsonl).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

const FROM_TRACES_EXAMPLES: &str = "\
Examples:
  runner dataset from-traces support_greeting --since 24h --where 'score.correctness < 0.5' \\
      --out failing.jsonl
  runner dataset from-traces support_greeting --version production --status error --out errors.jsonl
  runner dataset from-traces support_greeting --label thumbs=down --limit 200 --out down.jsonl
  runner experiment --prompt support_greeting --tag staging --dataset failing.jsonl

The spans are those `runner serve` stored (POST /v1/traces) linked to the prompt; spans of
experiment runs are left out. A span meets --where or --label when an annotation scoring it
does (its own, its trace's, or one on an unlinked span of its trace); every filter must hold.
A row holds id (the span id), the span's template variables, expected (an annotation's
metadata key `expected`, else the explanation, or label, of an annotation named `correction`;
the newest wins), span_id and trace_id. Spans without template variables are skipped and
counted. Rows go oldest first; --limit keeps the newest N. The file is written whole or not at
all; when no span matches it is written empty.";

#[derive(Debug, Args)]
pub struct FromTracesArgs {
    /// The prompt whose spans become rows.
    pub prompt: String,
    /// Only spans of this version: a number, vN, a tag (the version it points at now) or a
    /// version id.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Only spans that started then or later: a duration back from now (30m, 24h, 7d) or an
    /// RFC 3339 time (2026-05-01T00:00:00Z).
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Only spans that started before then (the forms of --since).
    #[arg(long, value_name = "DURATION|TIME")]
    pub until: Option<String>,
    /// Only spans with an annotation scored so: score.NAME OP NUMBER, OP one of <, <=, >, >=,
    /// ==, != (repeatable; all must hold).
    #[arg(long = "where", value_name = "CONDITION")]
    pub conditions: Vec<String>,
    /// Only spans with an annotation NAME labelled VALUE (repeatable; all must hold).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// Only spans with this status (errored calls).
    #[arg(long, value_name = "STATUS", value_parser = ["error"])]
    pub status: Option<String>,
    /// At most N rows, the newest.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The file to write (.jsonl); an existing file is replaced.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a whole store (prompts, versions, tags and their history, experiments, results,
    /// the response cache) into an empty one, between any two backends.
    #[command(after_help = "\
Examples:
  runner store copy --from runner.db --to postgres://runner@db.internal:5432/prompts
  runner store copy --from postgres://runner@db.internal:5432/prompts --to backup.db

The destination must be empty (a new file, or a database with no tables); it is created and
migrated. Passwords come from PGPASSWORD or ~/.pgpass and are never printed.")]
    Copy(StoreCopyArgs),
}

#[derive(Debug, Args)]
pub struct StoreCopyArgs {
    /// The store to read (an SQLite file or a postgres:// URL); it is not changed.
    #[arg(long, value_name = "PATH|URL")]
    pub from: PathBuf,
    /// The empty store to write (an SQLite file or a postgres:// URL).
    #[arg(long, value_name = "PATH|URL")]
    pub to: PathBuf,
}

const SYNC_EXAMPLES: &str = "\
Examples:
  runner sync prompts/                                 # on the main branch, after a merge
  runner sync prompts/ --check --markdown sync.md      # on a pull request: exit 1 if it differs
  runner sync prompts/ -m 'Friendlier greeting' --json
  runner sync prompts/ --prune                         # also archive prompts without a file

A prompt file is prompts/NAME.yaml (or .yml, .json, .toml): template (or messages), and
optionally format, model, params, metadata, description, message and tags. The JSON Schema is
schemas/prompt-file.schema.json. A version is appended only where a file's content differs from
the prompt's latest version (content hash and description); its message is the file's, else -m,
else the latest git commit's subject. Tags a file names are set on its version, except protected
ones (production) once they exist: `runner promote` moves those. Prompts without a file are
left alone (--prune archives them); a file for an archived prompt restores it.
Any invalid file: every problem is listed, nothing is written (exit 2).

Exit codes: 0 synced (or, with --check, in sync), 1 --check found differences, 2 invalid
files or flags, 3 store unavailable.";

const PULL_EXAMPLES: &str = "\
Examples:
  runner pull prompts/                                 # every prompt, its latest version
  runner pull prompts/ support_greeting --tag production

Each prompt goes to its existing file in DIR (NAME.yaml, .yml, .json or .toml, in that file's
syntax), else to DIR/NAME.yaml; a file that already holds the version and its tags is left as
it is. A file lists the tags on its version. Then `runner sync DIR --check` is in sync (for
--tag, when the tag is on the latest version).";

const EXPERIMENT_EXAMPLES: &str = "\
Examples:
  runner experiment --prompt support_greeting --tag staging --dataset datasets/queries.csv
  runner experiment --prompt support_greeting --version 3 --dataset cases.jsonl \\
      --eval icontains --eval 'regex:^(Hi|Hello)' --eval max-latency:2000 --concurrency 32
  runner experiment list --prompt support_greeting
  runner experiment show exp_1a2b3c --rows
  runner experiment resume exp_1a2b3c
  runner experiment --prompt p --tag staging --dataset big.csv --detach --key \"$CI_RUN_ID\"
  runner experiment --prompt p --tag staging --dataset big.csv --shard 2/4

Endpoint: --base-url, else OPENAI_BASE_URL, else https://api.openai.com/v1; the key comes from
OPENAI_API_KEY (optional for local servers). The model is --model, else the version's model.

Evaluators (--eval, repeatable): exact, contains, icontains, regex:PATTERN, json,
json-schema:FILE, similarity:THRESHOLD, max-latency:MS, judge:RUBRIC_FILE, cmd:PROGRAM.
Without --eval: icontains when the dataset has an expected column, none otherwise.";

const COMPARE_EXAMPLES: &str = "\
Examples:
  runner compare --prompt support_greeting --baseline production --candidate staging --dataset datasets/queries.csv
  runner compare --prompt support_greeting --baseline production --candidate staging --dataset d.csv --run --markdown
  runner compare exp_1a2b3c exp_4d5e6f --rows 20 --json
  runner compare exp_1a2b3c exp_4d5e6f --non-inferior 0.02 --cluster-column document

By tags, each tag's version is matched with its newest completed experiment on the same dataset
content (sha256), evaluators, model and repetitions; --run runs whatever is missing.

Per evaluator, the paired difference candidate − baseline over the rows both have (matched by
id): estimate, standard error, confidence interval, p-value (McNemar's exact test for pass / fail,
a paired t-test for scores, a clustered t-test with --cluster-column) and the smallest difference
this many rows detect with 80% power. --non-inferior, --min-improvement and --max-regression make
it a gate: exit 1 when it fails.";

const PROMOTE_EXAMPLES: &str = "\
Examples:
  runner promote --prompt support_greeting --candidate staging --baseline production \\
      --dataset datasets/queries.csv --min-pass-rate 0.9 --no-new-failures
  runner promote --prompt support_greeting --candidate staging --baseline production --dataset d.csv \\
      --max-regression 0.02 --max-p95-latency-ms 2000 --dry-run --junit gate.xml
  runner promote --prompt support_greeting --candidate staging --baseline production --dataset d.csv \\
      --non-inferior 0.02 --dry-run        # a pull-request check: not worse by more than 2 points
  runner promote --prompt support_greeting --candidate staging --baseline production --dataset d.csv \\
      --min-improvement 0.02               # a release: better by at least 2 points, for sure

Exit codes: 0 the gate passed (and the tag moved unless --dry-run), 1 it failed (nothing moved),
2 invalid input, 3 endpoint or store unavailable. Without any criterion: no regression against
the baseline (--max-regression 0 and --no-new-failures).";

const MOCK_EXAMPLES: &str = "\
Examples:
  runner mock-server --port 8089
  runner mock-server --port 8089 --latency-ms 50 --responses replies.yaml
  MOCK_PID=$(runner mock-server --port 8089 --detach)    # returns once it listens
  OPENAI_BASE_URL=http://127.0.0.1:8089/v1 runner experiment --prompt p --dataset d.csv

Replies: the first rule whose regex matches the last user message wins, else the message is
echoed. A rules file is a JSON or YAML list of {pattern, reply[, tool_calls, status,
latency_ms]}; with tool_calls (a list of {name, arguments}, `$1` captures allowed in argument
text) the answer carries those calls (finish_reason tool_calls) and may leave reply out.
Token usage counts whitespace-separated words.";

const WORKER_EXAMPLES: &str = "\
Examples:
  ID=$(runner experiment --prompt p --tag staging --dataset big.csv --detach --key \"$CI_RUN_ID\")
  runner worker $ID --concurrency 64                 # on as many machines as you like
  runner worker $ID --base-url http://gpu-2:8000/v1  # this worker's own endpoint
  runner experiment wait $ID --timeout 3600

A worker leases a batch of items (at most twice --concurrency), renews its leases every third
of --lease while it works, and writes each result in the transaction that completes its item.
A worker that dies holds its items until its leases run out; then another takes them. A worker
whose lease was taken over writes nothing for that item. It exits 0 when no item is left.";

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The detached experiment's id (a unique prefix is enough).
    pub id: String,
    /// Requests in flight at most [default: the experiment's].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// This worker's endpoint base URL [default: the experiment's].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Seconds a lease lasts without renewal: a dead worker's items wait this long.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub lease: f64,
    /// Run a `cmd:PROGRAM` evaluator the experiment names, matched exactly (repeatable): a
    /// worker runs no program from the store otherwise [also: allow_cmd under [worker] in
    /// runner.toml].
    #[arg(long, value_name = "PROGRAM")]
    pub allow_cmd: Vec<String>,
    /// Run an evaluator that reads a file (`judge:FILE`, `json-schema:FILE`) or a program,
    /// given as the whole spec, matched exactly (repeatable) [also: allow_eval under [worker]].
    #[arg(long, value_name = "SPEC")]
    pub allow_eval: Vec<String>,
    /// Print this worker's summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How the worker logs its progress (stderr): text lines for a person, or one JSON object
    /// a line for a log collector.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    pub action: Option<ExperimentAction>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExperimentAction {
    /// List experiments, newest first.
    List(ExperimentListArgs),
    /// Show an experiment's summary, and its rows with --rows.
    Show(ExperimentShowArgs),
    /// Run the rows of an experiment that have no successful result yet.
    Resume(ExperimentResumeArgs),
    /// How many rows (and repetitions) an experiment needs to detect a difference of D with
    /// 80% power; sends nothing.
    #[command(after_help = PLAN_EXAMPLES)]
    Plan(Box<ExperimentPlanArgs>),
    /// Wait until every item of a detached experiment has its result; exit with its code.
    #[command(after_help = WAIT_EXAMPLES)]
    Wait(ExperimentWaitArgs),
    /// Join the shards of one experiment (`--shard K/N`, one store each) into one experiment.
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(ExperimentMergeArgs),
}

const WAIT_EXAMPLES: &str = "\
Examples:
  runner experiment wait exp_1a2b3c
  runner experiment wait exp_1a2b3c --timeout 3600 --json

Progress across all workers goes to stderr. Exit codes: 0 every item has its result (and the
--min-pass-rate / --max-error-rate given at planning hold), 1 that check failed, 3 a worker
failed the experiment or --timeout passed first (the workers go on).";

const MERGE_EXAMPLES: &str = "\
Examples:
  runner --db shard1.db experiment --prompt p --tag staging --dataset d.csv --shard 1/2
  runner --db shard2.db experiment --prompt p --tag staging --dataset d.csv --shard 2/2
  runner experiment merge shard1.db shard2.db --into runner.db

The shards must be of one plan (same version, dataset content, model, endpoint, evaluators
and settings), each completed, together exactly shards 1..N. The merged experiment reads
like an unsharded run: compare and promote use it as evidence.";

#[derive(Debug, Args)]
pub struct ExperimentWaitArgs {
    /// The detached experiment's id (a unique prefix is enough).
    pub id: String,
    /// Give up after S seconds (exit 3; the workers go on) [default: wait as long as it takes].
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Confidence level of the intervals reported (0 to 1) [default: `confidence` in
    /// runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ExperimentMergeArgs {
    /// The shards' stores (SQLite files or postgres:// URLs); they are not changed.
    #[arg(value_name = "STORE", required = true)]
    pub stores: Vec<PathBuf>,
    /// The store to write the merged experiment into (created when missing).
    #[arg(long, value_name = "STORE")]
    pub into: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

const PLAN_EXAMPLES: &str = "\
Examples:
  runner experiment plan --prompt support_greeting --tag staging --dataset d.csv --detect 0.05
  runner experiment plan --prompt support_greeting --tag staging --dataset d.csv --detect 0.03 \\
      --experiment exp_1a2b3c
  runner experiment plan --prompt support_greeting --tag staging --dataset d.csv --detect 0.02 \\
      --experiment exp_1a2b3c --experiment exp_4d5e6f --confidence 0.99

The variance comes from --experiment: one experiment's rows (the two versions' rows taken as
uncorrelated, which overstates the rows needed when paired rows agree), or two experiments'
paired differences (baseline, then candidate). Without --experiment: the worst case, pass rates
of 50% and uncorrelated rows.";

#[derive(Debug, Args)]
pub struct ExperimentPlanArgs {
    /// The prompt the experiment would run.
    #[arg(long, value_name = "NAME")]
    pub prompt: String,
    #[command(flatten)]
    pub selector: VersionSelector,
    /// The dataset it would run over.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// The difference in pass rate to detect, as a fraction (0.05: 5 points).
    #[arg(long, value_name = "D")]
    pub detect: f64,
    /// Take the variance from this experiment (once), or from the paired differences of two
    /// (baseline, then candidate).
    #[arg(long = "experiment", value_name = "ID")]
    pub experiments: Vec<String>,
    /// Confidence level of the test (0 to 1) [default: `confidence` in runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: RunOptions,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The prompt to run.
    #[arg(long, value_name = "NAME")]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub selector: VersionSelector,
    /// The dataset: .csv (header row) or .jsonl (one object per line), or store:NAME[@V], a
    /// version kept in the store (`runner dataset push`).
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// A name for the experiment.
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    #[command(flatten)]
    pub options: RunOptions,
    /// Exit 1 unless every evaluator's pass rate is at least R (0 to 1).
    #[arg(long, value_name = "R")]
    pub min_pass_rate: Option<f64>,
    /// Exit 1 if more than this share of the calls failed (0 to 1).
    #[arg(long, value_name = "E")]
    pub max_error_rate: Option<f64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Confidence level of the intervals reported (0 to 1) [default: `confidence` in
    /// runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
    /// Plan the experiment as work items for `runner worker` and print its id; send nothing.
    #[arg(long)]
    pub detach: bool,
    /// With --detach: every job planning with this key gets the same experiment (e.g. the
    /// CI run id plus the configuration).
    #[arg(long, value_name = "TEXT", requires = "detach")]
    pub key: Option<String>,
    /// Run only shard K of N: the rows whose id hashes to it (stable when rows are added);
    /// `runner experiment merge` joins the shards' stores.
    #[arg(long, value_name = "K/N", conflicts_with = "detach")]
    pub shard: Option<String>,
}

/// How experiments run; shared by `experiment`, `compare --run` and `promote`. Unset options
/// come from runner.toml, then from the built-in defaults.
#[derive(Debug, Args, Clone, Default)]
pub struct RunOptions {
    /// An evaluator (repeatable): exact, contains, icontains, regex:PATTERN, json,
    /// json-schema:FILE, similarity:T, max-latency:MS, judge:RUBRIC_FILE, cmd:PROGRAM.
    #[arg(long = "eval", value_name = "SPEC")]
    pub evals: Vec<String>,
    /// Requests in flight at most [default: 16].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Times each row is run (to measure flakiness) [default: 1].
    #[arg(long, value_name = "N")]
    pub repetitions: Option<usize>,
    /// Only the first N rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Model name; default: the version's model.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Endpoint base URL, e.g. http://localhost:11434/v1; default: OPENAI_BASE_URL, else OpenAI.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Seconds per request attempt, including reading the whole body [default: 60].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Retries of a retryable failure (408, 429, 5xx, timeouts, connection errors) [default: 3].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// A constant template variable for every row (repeatable); overrides a column of that name.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Fill template variable VAR from dataset column COLUMN (repeatable).
    #[arg(long = "column", value_name = "VAR=COLUMN")]
    pub columns: Vec<String>,
    /// The column holding expected answers; default: `expected` when present.
    #[arg(long, value_name = "COLUMN")]
    pub expected_column: Option<String>,
    /// Model for judge: evaluators; default: the experiment's model.
    #[arg(long, value_name = "MODEL")]
    pub judge_model: Option<String>,
    /// Neither read nor write the response cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Call the endpoint for every row: use no cached answer (new answers still refresh the
    /// cache); on compare and promote, also run new experiments instead of reusing stored ones.
    #[arg(long)]
    pub fresh: bool,
    /// Use cached answers no older than this: 90s, 30m, 12h, 7d [default: any age].
    #[arg(long, value_name = "DURATION")]
    pub cache_ttl: Option<String>,
    /// Requests per minute at most (a token bucket); the endpoint's x-ratelimit-* headers
    /// may tighten it [default: what the endpoint says, else none].
    #[arg(long, value_name = "N")]
    pub max_rpm: Option<f64>,
    /// Tokens per minute at most: each request's cost is estimated (prompt length plus
    /// max_tokens) and corrected from its usage.
    #[arg(long, value_name = "N")]
    pub max_tpm: Option<f64>,
    /// Dollars the experiment may spend: a request whose estimated cost would pass it is not
    /// sent, the run stops (exit 1) and `experiment resume ID --max-cost MORE` runs the rest.
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Your application answers each row instead of one chat call: `cmd:PROGRAM` (a
    /// long-lived program reading one JSON object a line on stdin, answering one a line on
    /// stdout) or an http(s) URL (each row POSTed as JSON). See docs/experiments.md,
    /// "Testing your application (targets)".
    #[arg(long, value_name = "cmd:PROGRAM|URL")]
    pub target: Option<String>,
    /// An environment variable a cmd: target may see (repeatable); by default it gets only
    /// PATH, HOME, the locale, TMPDIR and TZ, never the API key or the store's credentials.
    #[arg(long = "target-env", value_name = "NAME")]
    pub target_env: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Two experiment ids (baseline, then candidate) instead of --prompt/--tags/--dataset.
    #[arg(value_name = "EXPERIMENT", num_args = 0..=2)]
    pub experiments: Vec<String>,
    /// The prompt whose tags are compared.
    #[arg(long, value_name = "NAME")]
    pub prompt: Option<String>,
    /// The baseline's tag (what runs now), e.g. production.
    #[arg(
        long,
        value_name = "TAG",
        requires = "candidate",
        conflicts_with = "tags"
    )]
    pub baseline: Option<String>,
    /// The candidate's tag (what may replace it), e.g. staging.
    #[arg(
        long,
        value_name = "TAG",
        requires = "baseline",
        conflicts_with = "tags"
    )]
    pub candidate: Option<String>,
    /// BASELINE,CANDIDATE tags in one flag: the older spelling of --baseline and --candidate.
    #[arg(
        long,
        value_name = "BASE,CANDIDATE",
        value_delimiter = ',',
        hide = true
    )]
    pub tags: Vec<String>,
    /// The dataset both experiments ran over (matched by content hash).
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// Run whatever experiment is missing first.
    #[arg(long)]
    pub run: bool,
    /// Regressed and improved rows to show, each.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rows: usize,
    /// Set each version's production traffic beside its experiment: the window back from now
    /// (24h, 7d) or an RFC 3339 time, read from the spans applications sent to `runner serve`.
    #[arg(long, value_name = "AGO|TIME")]
    pub production: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print Markdown (for a pull-request comment).
    #[arg(long)]
    pub markdown: bool,
    /// Confidence level of the intervals reported (0 to 1) [default: `confidence` in
    /// runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
    /// Rows sharing a value of this dataset column are not independent (the same source
    /// document, say): standard errors are clustered on it.
    #[arg(long, value_name = "COL")]
    pub cluster_column: Option<String>,
    /// Gate: pass only if the lower bound of the pass rate's difference (candidate − baseline)
    /// is at least −D, per evaluator ("not worse by more than D, with confidence C"); exit 1 if not.
    #[arg(long, value_name = "D")]
    pub non_inferior: Option<f64>,
    /// Gate: pass only if the lower bound of the pass rate's difference is at least D (the
    /// candidate is really better), per evaluator; exit 1 if not.
    #[arg(long, value_name = "D")]
    pub min_improvement: Option<f64>,
    /// Gate: the candidate's pass rate may trail the baseline's by at most D (0..1), per
    /// evaluator; exit 1 if it trails more.
    #[arg(long, value_name = "D")]
    pub max_regression: Option<f64>,
    /// The share of errored results (0..1) an experiment may have and still be compared;
    /// beyond it, on either side, it is refused as evidence [default: 0, none].
    #[arg(long, value_name = "E")]
    pub max_error_rate: Option<f64>,
    /// Gate, with --eval pairwise[:RUBRIC_FILE]: pass only if the lower bound of the
    /// candidate's win rate against the baseline (ties count half) is at least R; exit 1 if not.
    #[arg(long, value_name = "R")]
    pub min_win_rate: Option<f64>,
    /// Only stored experiments run against the same endpoint (--base-url / OPENAI_BASE_URL)
    /// count as evidence; by default the endpoint is not part of what must match.
    #[arg(long)]
    pub same_endpoint: bool,
    /// The baseline experiment, by id (or the start of one) or by name (the same as the first
    /// EXPERIMENT).
    #[arg(
        long,
        value_name = "ID|NAME",
        requires = "candidate_experiment",
        conflicts_with_all = ["experiments", "prompt", "tags"]
    )]
    pub baseline_experiment: Option<String>,
    /// The candidate experiment, by id (or the start of one) or by name (the same as the
    /// second EXPERIMENT).
    #[arg(long, value_name = "ID|NAME", requires = "baseline_experiment")]
    pub candidate_experiment: Option<String>,
    #[command(flatten)]
    pub options: RunOptions,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The prompt whose tag moves.
    #[arg(long, value_name = "NAME")]
    pub prompt: String,
    /// The candidate: the tag whose version may be promoted, e.g. staging (also --from).
    #[arg(long = "candidate", value_name = "TAG", alias = "from")]
    pub from: String,
    /// The baseline: the tag that moves to the candidate's version when the gate passes, e.g.
    /// production (also --to).
    #[arg(long = "baseline", value_name = "TAG", alias = "to")]
    pub to: String,
    /// The dataset the gate is evaluated on; default: the prompt's dataset in runner.toml.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// Every evaluator's pass rate on the candidate must be at least R (0..1).
    #[arg(long, value_name = "R")]
    pub min_pass_rate: Option<f64>,
    /// The candidate's pass rate may trail the baseline's by at most D (0..1), per evaluator.
    #[arg(long, value_name = "D")]
    pub max_regression: Option<f64>,
    /// No row that passes on the baseline may fail on the candidate.
    #[arg(long)]
    pub no_new_failures: bool,
    /// With --eval pairwise[:RUBRIC_FILE]: a judge sees both sides' answers in both orders,
    /// and the lower bound of the candidate's win rate (ties half) must be at least R.
    #[arg(long, value_name = "R")]
    pub min_win_rate: Option<f64>,
    /// The share of errored results (0..1) each side's experiment may have; beyond it, the
    /// experiment is refused as evidence [default: `max_error_rate` under [gate] in
    /// runner.toml, else 0: none].
    #[arg(long, value_name = "E")]
    pub max_error_rate: Option<f64>,
    /// Only stored experiments run against the same endpoint (--base-url / OPENAI_BASE_URL)
    /// count as evidence; by default the endpoint is not part of what must match.
    #[arg(long)]
    pub same_endpoint: bool,
    /// The candidate's p95 latency must be at most MS.
    #[arg(long, value_name = "MS")]
    pub max_p95_latency_ms: Option<f64>,
    /// The lower bound of the pass rate's difference (candidate − baseline) must be at least
    /// −D, per evaluator: not worse by more than D, with confidence C.
    #[arg(long, value_name = "D")]
    pub non_inferior: Option<f64>,
    /// The lower bound of the pass rate's difference must be at least D, per evaluator: the
    /// candidate is really better.
    #[arg(long, value_name = "D")]
    pub min_improvement: Option<f64>,
    /// Confidence level of the intervals reported (0 to 1) [default: `confidence` in
    /// runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
    /// Cluster the standard errors on this dataset column (rows sharing a value are not
    /// independent).
    #[arg(long, value_name = "COL")]
    pub cluster_column: Option<String>,
    /// The candidate's cost per row may exceed the baseline's by at most R (0.1: 10 % more);
    /// prices from the built-in table or [prices."MODEL"] in runner.toml.
    #[arg(long, value_name = "R")]
    pub max_cost_increase: Option<f64>,
    /// Evaluate and report, move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Why (kept in the tag history with the evidence).
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write the verdict as JUnit XML to FILE (one test case per criterion).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Gate on this experiment as the candidate's evidence instead of finding one by
    /// fingerprint (a detached experiment, or one your code ran through the Phoenix client),
    /// by id or by name: it must be of the --candidate tag's version, completed, and on the
    /// baseline experiment's dataset.
    #[arg(
        long,
        value_name = "ID|NAME",
        conflicts_with_all = ["dataset", "fresh", "repetitions", "model", "limit"]
    )]
    pub candidate_experiment: Option<String>,
    /// The baseline's evidence, with --candidate-experiment (by id or by name): of the
    /// --baseline tag's version, completed.
    #[arg(long, value_name = "ID|NAME", requires = "candidate_experiment")]
    pub baseline_experiment: Option<String>,
    #[command(flatten)]
    pub options: RunOptions,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files in DIR instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExperimentListArgs {
    /// Only this prompt's experiments.
    #[arg(long, value_name = "NAME")]
    pub prompt: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExperimentShowArgs {
    /// Experiment id (a unique prefix is enough), or `last` for the newest.
    pub id: String,
    /// Also list every row: input, expected, output, status and scores.
    #[arg(long)]
    pub rows: bool,
    /// With --rows (or --json / --csv): only rows that failed an evaluator or errored.
    #[arg(long)]
    pub failed: bool,
    /// With --rows (or --json / --csv): only rows whose call errored.
    #[arg(long, conflicts_with = "failed")]
    pub errored: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write every row (or the --failed / --errored ones) to a CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Confidence level of the intervals reported (0 to 1) [default: `confidence` in
    /// runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ExperimentResumeArgs {
    /// Experiment id (a unique prefix is enough).
    pub id: String,
    /// A new budget in dollars for the experiment as a whole (its stored results count).
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Confidence level of the intervals reported (0 to 1) [default: `confidence` in
    /// runner.toml, else 0.95].
    #[arg(long, value_name = "C")]
    pub confidence: Option<f64>,
}

#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Port on 127.0.0.1; 0 picks a free one (printed on start).
    #[arg(long, value_name = "N", default_value_t = 8089)]
    pub port: u16,
    /// Delay before each reply.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Reply rules: a JSON or YAML list of {pattern, reply}.
    #[arg(long, value_name = "FILE")]
    pub responses: Option<PathBuf>,
    /// A request with "stream": true is answered as server-sent events, a word a chunk, this
    /// many milliseconds apart.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub chunk_ms: u64,
    /// Requests per minute the endpoint allows, like a hosted API: beyond them it answers 429
    /// with Retry-After; every answer carries x-ratelimit-* headers.
    #[arg(long, value_name = "N")]
    pub rpm: Option<f64>,
    /// Tokens per minute it allows (prompt words plus max_tokens, or the answer's words).
    #[arg(long, value_name = "N")]
    pub tpm: Option<f64>,
    /// How many seconds' worth of --rpm / --tpm it lets through at once, as a hosted API's
    /// burst (default 1).
    #[arg(long, value_name = "SECS")]
    pub burst_secs: Option<f64>,
    /// Act as a billed endpoint: runs against it are priced at the model's list price (to
    /// rehearse costs and --max-cost offline). Without it they cost $0 (mock).
    #[arg(long)]
    pub priced: bool,
    /// Run in the background: return once the endpoint listens, printing its process id on
    /// stdout (stop it with `kill PID`).
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Subcommand)]
pub enum PromptCommand {
    /// Create a prompt with its first version.
    #[command(after_help = "\
Examples:
  runner prompt create customer_support_greeting \\
      --template 'You are a support agent for {{company_name}}. Customer: {{query}}' \\
      --model gpt-4 --param temperature=0.7 --param max_tokens=500 --meta owner=support-team
  runner prompt create triage --messages-file triage.json --format fstring --tag staging")]
    Create(CreateArgs),
    /// Append a version; what is not given carries over from the latest version.
    #[command(after_help = "\
Examples:
  runner prompt update customer_support_greeting --template-file v2.txt -m 'Added escalation guidelines'
  runner prompt update customer_support_greeting --param temperature=0.2 --tag staging
  runner prompt update customer_support_greeting --meta reviewer=null   # null removes a key")]
    Update(UpdateArgs),
    /// Show one version (default: the latest).
    #[command(after_help = "\
Examples:
  runner prompt show customer_support_greeting
  runner prompt show customer_support_greeting --tag production --json
  runner prompt show customer_support_greeting --version 1")]
    Show(ShowArgs),
    /// List prompts.
    #[command(after_help = "\
Examples:
  runner prompt list
  runner prompt list --search support --tag production --meta owner=support-team --json")]
    List(ListArgs),
    /// Bring back a prompt archived over HTTP (Phoenix's DELETE /v1/prompts/{id}), with every
    /// version, tag and event it had.
    #[command(after_help = "Examples:\n  runner prompt restore customer_support_greeting")]
    Restore(NameArgs),
    /// List the versions of a prompt, newest first.
    #[command(after_help = "Examples:\n  runner prompt versions customer_support_greeting --json")]
    Versions(NameArgs),
    /// Show what changed between two versions.
    #[command(after_help = "\
FROM and TO are each a version number, a tag name or a version id.

Examples:
  runner prompt diff customer_support_greeting 1 2
  runner prompt diff customer_support_greeting production staging --json")]
    Diff(DiffArgs),
    /// Render a version with variables, exactly as it would be sent.
    #[command(after_help = "\
Examples:
  runner prompt render customer_support_greeting --tag production \\
      --var company_name=Acme --var 'query=Where is my order?'
  runner prompt render customer_support_greeting --vars-file vars.json --json")]
    Render(RenderArgs),
}

/// The content of a version, shared by create and update.
#[derive(Debug, Args)]
pub struct VersionOptions {
    /// The template text.
    #[arg(long, value_name = "TEXT", group = "source")]
    pub template: Option<String>,
    /// Read the template text from a file.
    #[arg(long, value_name = "FILE", group = "source")]
    pub template_file: Option<PathBuf>,
    /// A chat template: a JSON list of {"role": ..., "content": ...} messages.
    #[arg(long, value_name = "FILE", group = "source")]
    pub messages_file: Option<PathBuf>,
    /// Placeholder syntax: mustache ({{name}}), fstring ({name}) or none. Create default: mustache.
    #[arg(long, value_name = "FORMAT", value_parser = ["mustache", "fstring", "none"])]
    pub format: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Invocation parameter; VALUE is read as JSON when it is valid JSON (temperature=0.7 is a number).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Free metadata; VALUE is read as JSON when it is valid JSON.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// What the prompt is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The commit message of this version.
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Point this tag at the new version (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Allow --tag to move a protected tag (recorded in the history).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Prompt name: letters, digits, '_', '-', '.'.
    pub name: String,
    #[command(flatten)]
    pub version: VersionOptions,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The prompt's name.
    pub name: String,
    #[command(flatten)]
    pub version: VersionOptions,
    /// Append the version even when it holds what the latest holds (a re-release, say).
    #[arg(long)]
    pub allow_same: bool,
}

/// Which version of a prompt: by number, id or tag; the latest when none is given.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct VersionSelector {
    /// Version number (1, 2, 3 …).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Stable version id.
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    /// The version a tag points at.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The prompt's name.
    pub name: String,
    #[command(flatten)]
    pub selector: VersionSelector,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only prompts whose name or description contains TEXT (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Only prompts that have this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only prompts whose latest version has this metadata (repeatable; all must match).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The prompt's name.
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The prompt's name.
    pub name: String,
    /// Version number, tag name or version id.
    pub from: String,
    /// Version number, tag name or version id.
    pub to: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

const TRY_EXAMPLES: &str = "\
Examples:
  runner try support_greeting --tag staging --var 'query=Where is my order?'
  runner try support_greeting --dataset datasets/queries.csv --row q3
  runner try support_greeting --tags production,staging --var 'query=I want a refund'
  runner try support_greeting --tag staging --template-file draft.txt --var query=hi
  runner try support_greeting --tag staging --template-file draft.txt --var query=hi \\
      --save -m 'Shorter greeting'

Nothing a try does is recorded (no experiment, no cache) unless --save stores the tried
template as a new version. A missing variable exits 2 before any request; a failed call exits 3.";

#[derive(Debug, Args)]
pub struct TryArgs {
    /// The prompt's name.
    pub name: String,
    #[command(flatten)]
    pub selector: VersionSelector,
    /// Two tags, e.g. production,staging: both versions get the same input at once.
    #[arg(long, value_name = "A,B", value_delimiter = ',', conflicts_with_all = ["version", "version_id", "tag"])]
    pub tags: Vec<String>,
    /// A variable (repeatable); overrides the dataset row and the variables file.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A JSON (or YAML) object of variables.
    #[arg(long, value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
    /// Take the variables from a dataset row (with --row).
    #[arg(long, value_name = "FILE", requires = "row")]
    pub dataset: Option<PathBuf>,
    /// The row's id (its `id` column, else its 0-based index).
    #[arg(long, value_name = "ID", requires = "dataset")]
    pub row: Option<String>,
    /// Try this template text instead of the version's (its model and parameters stay).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["messages_file", "tags"])]
    pub template_file: Option<PathBuf>,
    /// Try these chat messages instead of the version's template.
    #[arg(long, value_name = "FILE", conflicts_with = "tags")]
    pub messages_file: Option<PathBuf>,
    /// Store the tried template as a new version of the prompt (after a successful call).
    #[arg(long, requires = "message")]
    pub save: bool,
    /// The new version's message (with --save).
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Model name; default: runner.toml's, else the version's.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Endpoint base URL; default: runner.toml's, else OPENAI_BASE_URL, else OpenAI.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Seconds for the call [default: 60].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Retries of a retryable failure before the answer starts [default: 3].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The prompt's name.
    pub name: String,
    #[command(flatten)]
    pub selector: VersionSelector,
    /// A variable (repeatable); the value is taken as written.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A JSON object of variables; --var values override it.
    #[arg(long, value_name = "FILE.json")]
    pub vars_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Point a tag at a version, creating or moving it.
    #[command(after_help = "\
Examples:
  runner tag set customer_support_greeting production --version 1
  runner tag set customer_support_greeting staging --version-id 0193... -m 'Ready for review'")]
    Set(TagSetArgs),
    /// List the tags of a prompt.
    #[command(after_help = "Examples:\n  runner tag list customer_support_greeting --json")]
    List(NameArgs),
    /// Delete a tag (recorded in the history; `runner rollback` restores it).
    #[command(
        after_help = "Examples:\n  runner tag delete customer_support_greeting experiment-a -m 'Experiment over'"
    )]
    Delete(TagDeleteArgs),
    /// Every change of a prompt's tags, oldest first.
    #[command(after_help = "\
Examples:
  runner tag history customer_support_greeting
  runner tag history customer_support_greeting production --json")]
    History(TagHistoryArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["version", "version_id"])))]
pub struct TagSetArgs {
    /// The prompt's name.
    pub name: String,
    /// Tag name: letters, digits, '_', '-', '.'; not only digits.
    pub tag: String,
    /// Version number.
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Stable version id.
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    /// Why the tag moves (kept in the history).
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Needed to change a protected tag (`production` by default); recorded in the history.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TagDeleteArgs {
    /// The prompt's name.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// A note recorded with the change (in the tag history).
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Needed to change a protected tag (`production` by default); recorded in the history.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TagHistoryArgs {
    /// The prompt's name.
    pub name: String,
    /// Only this tag.
    pub tag: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The prompt's name.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// A note recorded with the change (in the tag history).
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Needed to change a protected tag (`production` by default); recorded in the history.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Folder to write into (created if missing).
    pub dir: PathBuf,
    /// Prompts to export; all when none is named.
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The folder of prompt files: NAME.yaml, NAME.yml, NAME.json or NAME.toml.
    pub dir: PathBuf,
    /// The message of new versions whose file has none [default: the latest git commit's
    /// subject, inside a git checkout].
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Write nothing: list what differs and exit 1 if anything does, 0 when in sync.
    #[arg(long)]
    pub check: bool,
    /// With --check: also write the changes as Markdown (a pull-request comment) to FILE.
    #[arg(long, value_name = "FILE", requires = "check")]
    pub markdown: Option<PathBuf>,
    /// Archive the store's prompts that have no file (recorded; `runner prompt restore NAME`,
    /// or adding its file back, brings one back).
    #[arg(long)]
    pub prune: bool,
    /// With --prune: also archive prompts that hold a protected tag (which archiving takes
    /// offline for every consumer); recorded as forced in the prompt's history.
    #[arg(long, requires = "prune")]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Folder to write the prompt files into (created if missing).
    pub dir: PathBuf,
    /// Prompts to pull; all when none is named.
    pub names: Vec<String>,
    /// Pull the version under this tag instead of the latest (prompts without it are skipped
    /// when none is named).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A folder written by `runner export`.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one. Without a token file only a loopback
    /// address is allowed.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6006")]
    pub bind: String,
    /// Read-write bearer tokens, one a line (TOKEN, NAME:TOKEN, deploy:NAME:TOKEN for a
    /// token that also moves protected tags without force, or ingest:NAME:TOKEN for an
    /// application that reads prompts and sends traces); every request then needs one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Read-only bearer tokens (GET requests only), same format.
    #[arg(long, value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
    /// Seconds a client has to send a request's headers (from opening the connection, or from
    /// the first byte of a later request), else it is disconnected; and again its body, else 408.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Connections served at once; more wait for a free slot, and idle kept-alive connections
    /// are closed to make room.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_connections: usize,
    /// How the server logs (stderr): text lines for a person, or one JSON object a line for a
    /// log collector; each request's lines carry its request id (also sent back as
    /// X-Request-Id).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// How long production spans, annotations and lookup counts are kept (pruned in the
    /// background): seconds, or a number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub trace_retention: String,
    /// Spans waiting to be written at most; beyond it `POST /v1/traces` answers 503 with
    /// Retry-After and exporters send again later.
    #[arg(long, value_name = "SPANS", default_value_t = 100_000)]
    pub ingest_queue: usize,
}

/// The heading a flag is listed under in `--help`, by its long name: what it selects, the
/// endpoint it calls, how answers are judged, the gate's criteria, what is printed, and so on.
pub fn heading_of(long: &str) -> Option<&'static str> {
    Some(match long {
        "db" | "config" | "author" | "color" => "Global options",
        "prompt"
        | "tag"
        | "tags"
        | "version"
        | "version-id"
        | "versions"
        | "baseline"
        | "candidate"
        | "from"
        | "to"
        | "dataset"
        | "experiment"
        | "experiments"
        | "baseline-experiment"
        | "candidate-experiment"
        | "row"
        | "search"
        | "since"
        | "until"
        | "where"
        | "label"
        | "into"
        | "dir"
        | "errored"
        | "key"
        | "name"
        | "status" => "Selection",
        "template" | "template-file" | "messages-file" | "format" | "param" | "meta"
        | "description" | "message" | "save" | "allow-same" | "force" | "prune" | "check"
        | "role" | "expires" | "profile" => "Change",
        "base-url" | "model" | "concurrency" | "timeout" | "max-retries" | "max-rpm"
        | "max-tpm" | "target" | "target-env" | "no-cache" | "fresh" | "run" | "allow-cmd"
        | "cache-ttl" | "judge-model" | "rpm" | "tpm" | "latency-ms" | "chunk-ms" | "responses"
        | "detach" | "max-cost" | "detect" | "priced" | "burst-secs" => "Endpoint",
        "eval" | "expected-column" | "repetitions" | "column" | "var" | "vars-file"
        | "allow-eval" | "shard" | "labels" => "Evaluation",
        "min-pass-rate" | "max-regression" | "no-new-failures" | "max-error-rate"
        | "max-p95-latency-ms" | "non-inferior" | "min-improvement" | "max-cost-increase"
        | "min-win-rate" | "confidence" | "cluster-column" | "dry-run" | "same-endpoint"
        | "production" | "metric" | "step-after" | "steps" | "unit-header" | "canary-tag"
        | "allow-errors" => "Gate",
        "json" | "markdown" | "junit" | "rows" | "quiet" | "out" | "csv" | "failed" | "limit"
        | "show" | "wait" => "Output",
        "bind" | "port" | "header-timeout" | "idle-timeout" | "max-connections" | "token-file"
        | "read-token-file" | "ingest-queue" | "trace-retention" | "lease" | "log-format"
        | "trace-body-limit" | "ingest-batch" => "Server",
        _ => return None,
    })
}

/// The longest description `-h` shows for a flag, so that it fits on the flag's line.
const SHORT_HELP_CHARS: usize = 56;

/// A flag's description for `-h`: its first clause, cut at a word to fit one line (`--help`
/// shows the whole text).
fn short_help(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // Abbreviations end no clause.
    let guarded = flat
        .replace("e.g.", "e\u{1}g\u{1}")
        .replace("i.e.", "i\u{1}e\u{1}");
    let end = [". ", "; ", " (", ", e\u{1}g"]
        .iter()
        .filter_map(|mark| guarded.find(mark))
        .filter(|&at| at >= 12)
        .min()
        .unwrap_or(guarded.len());
    let clause = guarded[..end].trim_end_matches('.').replace('\u{1}', ".");
    if clause.chars().count() <= SHORT_HELP_CHARS {
        return clause;
    }
    let mut cut = String::new();
    for word in clause.split(' ') {
        if cut.chars().count() + word.chars().count() + 2 > SHORT_HELP_CHARS {
            break;
        }
        if !cut.is_empty() {
            cut.push(' ');
        }
        cut.push_str(word);
    }
    format!("{}…", cut.trim_end_matches([',', ';', ':']))
}

/// Lays out one command's help: each flag under its heading, `-h` a line a flag, `--help`
/// the whole descriptions and the examples; then each subcommand the same way.
fn lay_out(mut command: clap::Command) -> clap::Command {
    command = command.mut_args(|arg| {
        let mut arg = match arg.get_long().and_then(heading_of) {
            Some(heading) => arg.help_heading(heading),
            None => arg,
        };
        if let Some(help) = arg.get_help().map(|h| h.to_string())
            && arg.get_long_help().is_none()
        {
            let short = short_help(&help);
            if short != help {
                arg = arg.help(short).long_help(help);
            }
        }
        arg
    });
    if let Some(examples) = command.get_after_help().map(|h| h.to_string())
        && command.get_after_long_help().is_none()
    {
        command = command
            .after_help("Examples and more: --help")
            .after_long_help(examples);
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, lay_out);
    }
    command
}

/// The whole command line as `runner` parses it, laid out for `-h` and `--help`.
pub fn command() -> clap::Command {
    lay_out(<Cli as clap::CommandFactory>::command())
}

/// Parses the process's arguments with `command`'s layout (exits on `--help` or a usage error,
/// as clap does).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADINGS: [&str; 8] = [
        "Global options",
        "Selection",
        "Change",
        "Endpoint",
        "Evaluation",
        "Gate",
        "Output",
        "Server",
    ];

    /// Every flag of every command: a description, a heading of the list, and a one-line `-h`.
    fn walk(command: &clap::Command, path: &str, problems: &mut Vec<String>, flags: &mut usize) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let name = arg.get_long().map_or(id.to_string(), |l| format!("--{l}"));
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                problems.push(format!("{path} {name}: no description"));
            }
            if help.chars().count() > SHORT_HELP_CHARS {
                problems.push(format!("{path} {name}: -h shows more than a line: {help}"));
            }
            if arg.get_long().is_some() {
                *flags += 1;
                match arg.get_help_heading() {
                    Some(heading) if HEADINGS.contains(&heading) => {}
                    other => problems.push(format!("{path} {name}: heading {other:?}")),
                }
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), problems, flags);
        }
    }

    #[test]
    fn every_flag_has_a_description_a_heading_and_a_one_line_short_help() {
        let command = command();
        let mut problems = Vec::new();
        let mut flags = 0;
        walk(&command, "runner", &mut problems, &mut flags);
        assert!(flags > 300, "the walk found only {flags} flags");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn short_help_is_a_line_a_flag_and_long_help_has_the_examples() {
        let mut command = command();
        let promote = command.find_subcommand_mut("promote").unwrap();
        let short = promote.render_help().to_string();
        let long = promote.render_long_help().to_string();
        assert!(
            short.contains("Gate:") && short.contains("Selection:"),
            "{short}"
        );
        assert!(short.contains("Examples and more: --help"), "{short}");
        assert!(!short.contains("Examples:\n"), "{short}");
        assert!(long.contains("Examples:\n"), "{long}");
        assert!(long.len() > short.len());
        let global = command.render_help().to_string();
        assert!(global.contains("Global options:"), "{global}");
    }
}
