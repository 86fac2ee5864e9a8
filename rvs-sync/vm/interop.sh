# Runs inside the IPVS VM (rvs-sync/vm/run.sh rvs-sync/vm/interop.sh): records what the
# kernel's master sync daemon sends (v1, then v0), and has a kernel backup install rvs's
# messages (the RVS lines, from `cargo run -p rvs-sync --example fixture`, substituted by
# the caller for @RVS_MESSAGES@).
set +e
ip link add dummy0 type dummy; ip link set dummy0 up; ip addr add 198.18.200.1/24 dev dummy0
for i in $(seq 10 60); do ip addr add 198.18.100.$i/32 dev dummy0; done
ip route add 198.18.0.0/24 dev dummy0
ip route add 224.0.0.0/4 dev dummy0
ipvsadm -A -t 198.18.0.10:80 -s rr; ipvsadm -a -t 198.18.0.10:80 -r 198.18.200.11:80 -g -w 1
ipvsadm -A -u 198.18.0.10:53 -s rr; ipvsadm -a -u 198.18.0.10:53 -r 198.18.200.11:53 -g -w 1
ipvsadm -A -t 198.18.0.20:80 -s rr -p 300; ipvsadm -a -t 198.18.0.20:80 -r 198.18.200.12:80 -g -w 1
ipvsadm -A -t 198.18.0.30:80 -s rr; ipvsadm -a -t 198.18.0.30:80 -r 198.18.200.13:8080 -m -w 1
ipvsadm --start-daemon master --mcast-interface dummy0 --syncid 7
ipvsadm --start-daemon backup --mcast-interface dummy0 --syncid 9
echo "--- daemons"; ipvsadm -L --daemon
synctool capture dummy0 8848 40 > /tmp/cap.txt &
sleep 1
echo "--- flows"
synctool tcp 198.18.100.10 40000 198.18.0.10 80 SAP
synctool tcp 198.18.100.11 40001 198.18.0.10 80 SAP
synctool tcp 198.18.100.12 40002 198.18.0.20 80 SAP
synctool tcp 198.18.100.13 40003 198.18.0.30 80 SAP
synctool udp 198.18.100.14 5353 198.18.0.10 53 4
sleep 3
synctool tcp 198.18.100.10 40000 198.18.0.10 80 F
synctool tcp 198.18.100.11 40001 198.18.0.10 80 R
sleep 3
for i in $(seq 20 64); do synctool tcp 198.18.100.$((i < 61 ? i : i - 40)) $((41000 + i)) 198.18.0.10 80 SAP; done
sleep 4
echo 0 > /proc/sys/net/ipv4/vs/sync_version
synctool tcp 198.18.100.15 40005 198.18.0.10 80 SAP
synctool udp 198.18.100.16 5354 198.18.0.10 53 4
sleep 4
echo 1 > /proc/sys/net/ipv4/vs/sync_version
echo "--- rvs to kernel backup"
for m in @RVS_MESSAGES@; do synctool send 198.18.200.1 224.0.0.81 8848 $m; echo "sent rc=$?"; done
sleep 3
echo "--- Lnc"; ipvsadm -Lnc
echo "--- dmesg"; dmesg | grep -i ipvs | tail -20
wait
echo "--- capture"; cat /tmp/cap.txt
