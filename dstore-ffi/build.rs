//! Gives libdstore.so its SONAME, `libdstore.so.MAJOR`, so that programs linked against one
//! release load any later one of the same major version (`make install` adds the links).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdstore.so.{major}");
    }
}
