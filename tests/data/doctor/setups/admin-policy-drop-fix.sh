# the fix doctor prints for admin-policy-drop.nft (tests/doctor/test_doctor_ruleset.py checks it still does)
nft 'insert rule inet filter forward iifname "eno1" oifname "virbr0" ct status dnat accept'
nft 'insert rule inet filter forward iifname "virbr0" oifname "eno1" ip saddr 192.168.122.0/24 accept'
nft 'insert rule inet filter forward iifname "virbr0" oifname "virbr0" ct status dnat accept'
