// Package bpf holds the XDP programs of xlbd, compiled by bpf2go. The
// generated Go files and objects are committed so that building xlbd never
// needs clang; `make generate` refreshes them.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type svc_key -type svc_val -type svc_flags -type real_val -type real_flags -type real_conns -type ctl_val -type conn_cfg -type conn_key -type conn_val -type conn_flags -type tmpl_key -type tmpl_val -type nat_val -type nat_slot -type lblc_key -type lblc_val -type stats -type rr_val -type gc_result -type frag_key -type frag_val -type frag_flags -type filter_flags -type pmtu_key -type pmtu_val -type rt_ctl -type rt_val -type held_frag -type overload_arg -type trees_arg -type tnode -type tree_pos -type verdict -type lb_mode -type sched_kind Xlb xlb.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type decap_verdict Decap decap.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel Pass pass.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type clock_sample Clock clock.c
