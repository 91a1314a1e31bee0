//! `outpost-hub`: the hub daemon (`init`, `serve`) and the ops CLI.
fn main() -> std::process::ExitCode {
    outpost_hub::app::main()
}
