//! `extrasafe-docs OUT_DIR`: the man pages and shell completions of `extrasafe` and
//! `extrasafe-desktop`, made from the very grammar the two programs parse (their `args.rs`
//! files are compiled in here), so a page can never describe an option that is not there.
//!
//! Writes `OUT_DIR/man/*.1` (one page per command and subcommand) and
//! `OUT_DIR/completions/{bash,zsh,fish}/…`. `packaging/deb.sh` puts them into the package.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, CommandFactory};
use clap_complete::Shell;

#[allow(dead_code)]
#[path = "../../crates/cli/src/args.rs"]
mod cli_args;

#[allow(dead_code)]
#[path = "../../crates/desktop/src/args.rs"]
mod desktop_args;

/// Every command the package installs, by the name it is run as.
fn commands() -> Vec<Command> {
    vec![cli_args::Cli::command(), desktop_args::Args::command()]
}

fn write_all(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for cmd in commands() {
        let version = cmd.get_version().unwrap_or_default().to_string();
        written.extend(man_pages(cmd, &man, &version)?);
    }
    // Named as each shell's completion loader looks them up, by the command's name.
    for (shell, dir, file) in [
        (Shell::Bash, "bash", "{}"),
        (Shell::Zsh, "zsh", "_{}"),
        (Shell::Fish, "fish", "{}.fish"),
    ] {
        let dir = out.join("completions").join(dir);
        std::fs::create_dir_all(&dir)?;
        for mut cmd in commands() {
            let name = cmd.get_name().to_string();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            let path = dir.join(file.replace("{}", &name));
            std::fs::write(&path, script)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// One page for the command and one for each subcommand, at every depth
/// (`extrasafe-contact-add.1`), each naming the others it belongs with.
fn man_pages(cmd: Command, dir: &Path, version: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let mut stack = vec![cmd];
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = clap_mangen::Man::new(cmd)
            .source(format!("EXTRA SAFE {version}"))
            .manual("EXTRA SAFE");
        pages.push(page.generate_to(dir)?);
    }
    Ok(pages)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: extrasafe-docs OUT_DIR   (writes OUT_DIR/man and OUT_DIR/completions)");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&out)) {
        Ok(files) => {
            println!(
                "{} files written under {}",
                files.len(),
                Path::new(&out).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("could not write under {}: {e}", Path::new(&out).display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand gets a page and every program completions for three shells; the
    /// pages carry the options the programs really take.
    #[test]
    fn pages_and_completions_cover_every_command() {
        let dir = std::env::temp_dir().join(format!("es-docs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_all(&dir).unwrap();
        let mut subs: Vec<String> = Vec::new();
        fn walk(prefix: &str, cmd: &Command, into: &mut Vec<String>) {
            let name = format!("{prefix}{}", cmd.get_name());
            for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(&format!("{name}-"), s, into);
            }
            into.push(name);
        }
        for cmd in commands() {
            walk("", &cmd, &mut subs);
        }
        assert!(subs.len() > 10, "{subs:?}");
        for name in &subs {
            let page = std::fs::read_to_string(dir.join("man").join(format!("{name}.1")))
                .unwrap_or_else(|e| panic!("{name}.1: {e}"));
            assert!(page.contains(".TH"), "{name}.1 has no title");
        }
        let call = std::fs::read_to_string(dir.join("man/extrasafe-call.1")).unwrap();
        assert!(call.contains("ring\\-timeout"), "{call}");
        let desktop = std::fs::read_to_string(dir.join("man/extrasafe-desktop.1")).unwrap();
        assert!(desktop.contains("accept\\-files"), "{desktop}");
        assert!(
            !desktop.contains("automation"),
            "a hidden option is documented"
        );
        for (dir_name, file) in [
            ("bash", "extrasafe"),
            ("bash", "extrasafe-desktop"),
            ("zsh", "_extrasafe"),
            ("fish", "extrasafe.fish"),
        ] {
            let text = std::fs::read_to_string(dir.join("completions").join(dir_name).join(file))
                .unwrap_or_else(|e| panic!("{dir_name}/{file}: {e}"));
            assert!(text.contains("listen") || text.contains("no-dht"), "{file}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
