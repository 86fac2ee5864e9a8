ip link add dummy0 type dummy; ip link set dummy0 up
ip addr add 198.18.200.1/24 dev dummy0
ip addr add 198.18.100.10/32 dev dummy0
ip addr add 198.19.100.10/32 dev dummy0
ip addr add 198.18.101.10/32 dev dummy0
ip route add 198.18.0.0/24 dev dummy0
cat > /tmp/k.conf <<'EOC'
virtual_server 198.18.0.10 80 {
    lb_algo foo
    lb_kind DR
    protocol TCP
    real_server 198.18.200.11 80 {
        weight 1
    }
}
virtual_server 198.18.0.11 80 {
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 198.18.200.11 80 {
        weight 70000
    }
    real_server 198.18.200.12 80 {
        weight 2147483648
    }
    real_server 198.18.200.13 80 {
        weight 2147483647
    }
}
virtual_server 198.18.0.12 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    persistence_timeout 300
    persistence_granularity 255.0.255.0
    real_server 198.18.200.11 80 {
        weight 1
    }
    real_server 198.18.200.12 80 {
        weight 1
    }
}
EOC
keepalived -n -l -D -f /tmp/k.conf -p /tmp/k.pid -c /tmp/c.pid > /tmp/k.log 2>&1 &
sleep 8
echo "--- ipvsadm -Ln"; ipvsadm -Ln
echo "--- synner 198.18.100.10, 198.19.100.10 (same under 255.0.255.0), 198.18.101.10 (differs)"
synner 198.18.0.12 80 198.18.100 10 1
synner 198.18.0.12 80 198.19.100 10 1
synner 198.18.0.12 80 198.18.101 10 1
echo "--- ipvsadm -Lnc"; ipvsadm -Lnc
echo "--- ipvsadm -A -M 255.0.255.0 direct"; ipvsadm -A -t 198.18.0.20:80 -s rr -p 60 -M 255.0.255.0; echo "rc $?"; ipvsadm -Ln -t 198.18.0.20:80
echo "--- keepalived log"; cat /tmp/k.log
