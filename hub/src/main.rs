fn main() {
    eprintln!("outpost-hub: not built yet");
    std::process::exit(2);
}
