"""The security battery: everything a peer sends is hostile until checked, even from a member.

Each point of the issue ("Hostile peers: the security battery"), and the test that shows it.
Tests marked xfail(strict) record a hole still open; each says what the fix is.

1. Identity
   - unknown certificate refused at the handshake:
     tests/node/test_daemon_tls.py::test_a_valid_certificate_that_is_not_a_member_is_refused_at_the_handshake
     and test_handshake.py::test_a_client_certificate_of_another_key_than_the_members_is_refused
   - expired certificate refused (both ways): test_handshake.py::
     test_an_expired_member_certificate_is_refused_at_the_handshake,
     test_an_expired_server_certificate_is_refused_by_the_client
   - wrong pin refused: test_handshake.py::
     test_a_server_presenting_another_certificate_than_the_pinned_one_is_refused
   - a member relaying signed records (membership, binding, borrow request, addresses) it
     altered or forged under another origin is refused and logged: test_relayed_records.py::
     test_a_member_relaying_altered_or_forged_signed_records_is_refused_and_logged;
     origins nobody admitted: test_records_of_origins_nobody_admitted_are_refused;
     another member's clock: test_a_member_cannot_move_another_members_clock (and, rule by
     rule, tests/core/test_replica.py::
     test_a_relayed_batch_moves_a_clock_only_as_far_as_its_origin_signed); records a relay
     leaves out (the clock proof's digest): test_relayed_records.py::
     test_a_member_relaying_an_origins_records_cannot_leave_any_out, and rule by rule
     tests/core/test_replica.py::test_a_relay_cannot_leave_out_records_its_origin_wrote,
     test_records_left_out_of_earlier_pages_come_again_from_another_member,
     test_a_relay_cannot_keep_back_the_newer_version_of_a_record
   - records of a node's own origin arriving from others are ignored:
     tests/core/test_replica.py::test_records_of_our_own_origin_from_others_are_ignored
   - a removed member's streams end within a second:
     tests/node/test_daemon_tls.py::test_removing_a_member_ends_its_stream_within_a_second
   - a pairing code is single use and locks out after 5 failures:
     tests/cli/test_pairing_commands.py::test_a_used_code_fails_for_a_third_node,
     test_five_wrong_codes_close_the_invitation (and test_an_expired_code_fails)
   - a SPAKE2 exchange with a wrong code reveals nothing usable: test_pairing_attacks.py::
     test_a_spake2_exchange_with_a_wrong_code_reveals_nothing_usable,
     test_an_eavesdropper_who_later_learns_the_code_cannot_recompute_the_keys;
     test_pairing.py::test_a_wrong_code_is_caught_by_the_inviter_before_it_reveals_anything
2. Hostile names (test_hostile_names.py)
   - in records and requests: test_hostile_paths_in_records_and_requests_are_refused_with_the_reason
     (and what a node writes itself: test_a_node_never_writes_a_record_its_peers_would_refuse,
     test_a_long_name_in_a_failure_reason_does_not_make_the_borrowers_records_unacceptable)
   - reserved Windows names, escapes, overrides:
     test_names_odd_only_on_windows_are_ordinary_on_posix_and_refused_for_windows
   - Unicode normalization: test_names_that_differ_only_by_unicode_normalization_are_two_files
   - in borrowed paths: tests/fs/test_borrowed.py::test_every_hostile_name_is_refused
   - shown escaped: test_the_cli_shows_hostile_names_escaped,
     test_daemon_logs_show_hostile_names_escaped
   - property, every accepted path stays under its root:
     test_every_accepted_path_stays_under_its_root
     and tests/fs/test_borrowed.py::test_every_accepted_placement_lands_under_the_root
3. Symlinks: test_symlinks.py::
   test_a_staging_file_swapped_for_a_symlink_during_a_pull_is_never_followed, and the planted
   and swapped links of tests/fs/test_borrowed.py listed in test_symlinks.py's docstring
4. Abuse (test_abuse.py)
   - over the size limit:
     test_a_message_over_the_size_limit_is_refused_and_other_peers_are_unaffected
   - test_500_idle_connections_and_50_stalled_handshakes_do_not_stop_a_member_being_served
   - test_a_gossip_flood_from_one_member_is_throttled_within_a_bounded_memory_budget
   - disk policy: test_a_borrower_cannot_be_made_to_fill_its_disk_past_its_policy (xfail),
     test_loans_from_one_lender_arriving_together_never_share_a_staging_file (xfail);
     tests/node/test_lending.py::test_over_the_quota_is_refused_and_nothing_is_fetched
5. Fuzzing (test_fuzz.py, MESH_FUZZ_EXAMPLES examples each, 150 by default): record bodies,
   envelopes, gossip frames, transfer requests, pairing payloads and messages, path checks,
   TXT parsing, envelope apply on a real replica, a daemon's peer handlers and a pairing
   listener over real sockets.
6. Names, removal and sharing (issue 18), each by a member speaking the protocol with its key
   - a member cannot rename another, nor take its name (shown name~ID7 instead), nor put
     files under another's name in the borrowed folder: test_names.py (rules in
     tests/core/test_membership.py, links in tests/fs/test_lender_links.py)
   - removal takes the members the removed one let in, unless kept: test_removal.py
     (rules: tests/core/test_membership.py::
     test_the_members_that_stand_only_on_a_members_admissions)
   - malformed Manifest/Fetch answered INVALID_ARGUMENT, peer log lines rate limited:
     test_log_flood.py (and tests/node/test_peer_log.py)
   - a library shared with chosen members lends to them only; --ask per library:
     test_sharing.py
7. README.md, "Security model".
"""
