"""Hard faults on the simulated LAN: nothing is lost when processes die, links break,
disks fill or data rots. Each item of the issue and its test:

1. Borrower SIGKILLed at ~50% of a 1 GiB loan, resumed, right hash, no partial file
   visible, saved chunks not fetched again:
   test_borrower_killed.py::test_a_borrower_killed_halfway_resumes_without_fetching_again
2. The only source killed mid-pull; a second holder taking over without a pause longer
   than the keepalive window (source killed, or silently cut off):
   test_source_killed.py::test_the_only_source_killed_mid_pull_finishes_when_it_returns,
   test_source_killed.py::test_with_a_second_holder_the_pull_goes_on_without_a_pause
3. A link blackholed for 30 s: stall seen within the keepalive window, pull and gossip
   complete after it heals, no record lost or doubled:
   test_blackhole.py::test_a_blackholed_link_is_detected_and_everything_completes_after_it_heals
4. A source serving corrupted chunks: refetched elsewhere, the source dropped and named in
   the log and the ledger:
   test_corrupt_source.py::test_a_corrupting_source_is_dropped_and_its_chunks_fetched_again
5. A crash at every step of placing a file (fsync/rename included), new and replaced:
   test_placing_crash.py::test_a_crash_at_every_step_of_placing_leaves_nothing_or_the_whole_file
   (and tests/fs/test_borrowed.py for the same steps without a daemon)
6. The disk filling up during a pull (a 64 MiB tmpfs):
   test_disk_full.py::test_a_full_disk_fails_the_loan_cleanly_and_it_resumes_when_space_is_freed
7. The daemon killed during a scan and during a gossip batch:
   test_killed_mid_write.py::test_a_daemon_killed_during_a_scan_or_a_gossip_batch_keeps_a_consistent_store
8. A lent file edited while it is pulled: never a mix of two versions:
   test_edited_while_lent.py::test_a_file_edited_while_it_is_pulled_never_reaches_the_borrower_mixed

harness.py runs real daemons (node_process.py: `mesh up`'s daemon with the test timings and
the fault-injection hooks) one per namespace of a tests.lan.netns LAN.
"""
