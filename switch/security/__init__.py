"""Keys, PIN blocks, MAC and ARQC, built on psec / pyemv / cryptography (HOST_SPEC §6-7)."""

import warnings

# psec and pyemv call 3DES through cryptography's deprecated path; 3DES is what
# HOST_SPEC §6 mandates, so the warning is known and not actionable here.
warnings.filterwarnings("ignore", message=".*TripleDES.*")
