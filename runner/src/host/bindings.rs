//! Host bindings generated from the plugin contract in `sdk/wit`.
//!
//! Imports and exports are async so a blocked host call (a process, an HTTP
//! request) never blocks the runner's thread, and a deadline can cancel it.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../sdk/wit",
    imports: { default: async },
    exports: { default: async },
});
