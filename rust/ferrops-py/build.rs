//! Records what the extension is built with, for `ferrops info` (bug reports):
//! the compiler, the Cargo profile, the target and the CPU features compiled in
//! unconditionally, the git commit and the build date when they are at hand.
//! Exposed by `platform::build_info` as `FERROPS_BUILD_*` compile-time variables.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<package>-<hash>/out: the
    // profile's own name (PROFILE says only "debug" or "release").
    let out_dir = env::var("OUT_DIR").unwrap_or_default();
    let profile = Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .and_then(|p| p.file_name())
        .map_or_else(|| env::var("PROFILE").unwrap_or_default(), |p| p.to_string_lossy().into_owned());
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    set("RUSTC", &rustc_version);
    set("PROFILE", &profile);
    set("OPT_LEVEL", &env::var("OPT_LEVEL").unwrap_or_default());
    set("TARGET", &env::var("TARGET").unwrap_or_default());
    set("TARGET_FEATURES", &features);
    set("COMMIT", &commit().unwrap_or_else(|| "unknown".into()));
    set("DATE", &build_date());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}

fn set(key: &str, value: &str) {
    println!("cargo:rustc-env=FERROPS_BUILD_{key}={value}");
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The short commit of a git checkout, and a rebuild when it moves (HEAD and the
/// branch it names); None in an sdist or without git.
fn commit() -> Option<String> {
    // Only this checkout's own repository: an unpacked sdist inside some other git
    // work tree must not report that tree's commit.
    output("git", &["ls-files", "--error-unmatch", "build.rs"])?;
    let hash = output("git", &["rev-parse", "--short=12", "HEAD"])?;
    let branch = output("git", &["symbolic-ref", "-q", "HEAD"]);
    for file in std::iter::once("HEAD").chain(branch.as_deref()) {
        if let Some(path) = output("git", &["rev-parse", "--git-path", file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(hash)
}

/// UTC date of the build: `SOURCE_DATE_EPOCH` when set (reproducible builds).
fn build_date() -> String {
    let seconds = env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    });
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
