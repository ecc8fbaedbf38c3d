//! The stock actions (`plugins/stock/*`), built from source by `build.rs` and
//! embedded in the binary, so a server needs no plugin files to do the basics.
//!
//! A leaf of its own: the config checks an action's name against these, and
//! the plugin registry loads them, without either knowing the other.

include!(concat!(env!("OUT_DIR"), "/stock_plugins.rs"));

/// The component bytes of the stock action `name`.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    STOCK_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

/// The names of all stock actions, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    STOCK_PLUGINS.iter().map(|(n, _)| *n)
}
