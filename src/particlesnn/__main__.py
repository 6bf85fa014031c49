from particlesnn.cli import main

main()
