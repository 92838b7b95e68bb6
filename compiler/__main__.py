from nftfwd.cli import main

main()
