//! The same scenario files over real chitchat 0.11 (`GossipHandle` over its in-memory
//! `ChannelTransport`), in paused time: every assertion of every file must hold there
//! too. This is the check that the model and the protocol agree on end states
//! (chitchat's own peer choice uses the thread RNG, so its traces differ run to run).

mod support;

use probemesh_sim::Backend;

macro_rules! on_chitchat {
    ($($file:ident),* $(,)?) => {
        $(
            #[test]
            fn $file() {
                support::run_file(stringify!($file), Backend::Chitchat);
            }
        )*

        #[test]
        fn every_scenario_file_runs_on_chitchat() {
            let tested = [$(stringify!($file)),*];
            let on_disk = probemesh_sim::scenario::load_dir(&support::dir()).unwrap();
            assert_eq!(on_disk.len(), tested.len(), "add new scenario files to on_chitchat! in sim/tests/chitchat_agrees.rs");
        }
    };
}

on_chitchat!(
    adoption_after_owner_dies,
    concurrent_delete_and_patch,
    dead_worker_evicted,
    fence_fleet_outage,
    fence_flapping,
    fence_half_unreachable,
    fence_node_cut_off,
    fence_three_nodes,
    fence_two_nodes,
    import_as_pending,
    one_sick_node,
    partial_reachability,
    partition_heal,
    patch_propagation,
    re_registration_race,
    restart_keeps_state,
    tombstone_outlives_writer,
);
