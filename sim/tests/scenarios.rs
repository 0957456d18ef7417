//! Every scenario in `sim/scenarios/` on the seeded model, in paused time. Each file
//! states what it checks (its `description`); the assertions are in the file.

mod support;

use probemesh_sim::Backend;

macro_rules! scenarios {
    ($($file:ident),* $(,)?) => {
        $(
            #[test]
            fn $file() {
                support::run_file(stringify!($file), Backend::Model);
            }
        )*

        #[test]
        fn every_scenario_file_has_a_test() {
            let tested = [$(stringify!($file)),*];
            let on_disk = probemesh_sim::scenario::load_dir(&support::dir()).unwrap();
            assert_eq!(on_disk.len(), tested.len(), "add new scenario files to scenarios! in sim/tests/scenarios.rs");
        }
    };
}

scenarios!(
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
