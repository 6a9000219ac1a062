fn main() {
    eprintln!("keel-clusterd: the config store daemon is not in this build yet");
    std::process::exit(2);
}
