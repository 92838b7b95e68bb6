# the fix doctor prints for docker.rules (tests/doctor/test_doctor_ruleset.py checks it still does)
iptables -I DOCKER-USER -i eno1 -o virbr0 -d 192.168.122.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
iptables -I DOCKER-USER -i eno1 -o virbr0 -m conntrack --ctstate DNAT -j ACCEPT
iptables -I DOCKER-USER -i virbr0 -o eno1 -m conntrack --ctstate DNAT -j ACCEPT
iptables -I DOCKER-USER -i virbr0 -o eno1 -s 192.168.122.0/24 -j ACCEPT
iptables -I DOCKER-USER -i virbr0 -o virbr0 -m conntrack --ctstate DNAT -j ACCEPT
