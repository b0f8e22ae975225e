//! The `runner` binary; everything lives in the library so tests and benchmarks can
//! drive it.

fn main() -> std::process::ExitCode {
    runner::cli::main()
}
